"""Per-character form of the original BasicTokenizer, derived from tokenization.reference itself.

The original BasicTokenizer is, per character c of the input:
  clean (drop chr 0 / U+FFFD / control chars, whitespace -> space), isolate CJK chars with spaces, then (lower-casing)
  str.lower() + NFD + strip Mn, then isolate punctuation, then split on whitespace.
All of that is a function of the single character, except two things that only arise when lower-casing:
  * Python's str.lower() maps CAPITAL SIGMA to final sigma depending on its neighbours (Final_Sigma context);
  * NFD canonically reorders runs of combining marks; after Mn stripping this only matters for combining marks that
    are not Mn (a handful of Mc characters such as musical symbols).
`char_map(c)` is the exact per-character function; `is_contextual(c)` flags the characters for which it is not enough.
"""
import functools
import unicodedata

from tokenization import reference

SIGMA = "\u03a3"
MAX_UNICODE = 0x110000


def _lower_strip(c):
    return reference.BasicTokenizer._run_strip_accents(None, c.lower())


def char_map(c, do_lower_case):
    """The reference BasicTokenizer's output for character c as a string in which tokens are separated by spaces
    (punctuation and CJK chars surrounded by spaces, removed chars empty)."""
    cp = ord(c)
    if cp == 0 or cp == 0xFFFD or reference._is_control(c):
        return ""
    if reference._is_whitespace(c) or c.isspace():
        return " "
    m = _lower_strip(c) if do_lower_case else c
    out = []
    for x in m:
        if reference._is_punctuation(x):
            out.append(" " + x + " ")
        elif x.isspace():
            out.append(" ")
        else:
            out.append(x)
    s = "".join(out)
    if reference._is_chinese_char(cp):
        s = " " + s + " "
    return s


def is_contextual(c, do_lower_case):
    """True where char_map is not the whole story (see module docstring)."""
    if not do_lower_case:
        return False
    if c == SIGMA:
        return True
    if reference._is_control(c) or ord(c) in (0, 0xFFFD):
        return False
    for x in unicodedata.normalize("NFD", c.lower()):
        if unicodedata.combining(x) and unicodedata.category(x) != "Mn":
            return True
    return False


class CharTable(dict):
    """str.translate table computing char_map lazily (cached) for the characters actually seen."""

    def __init__(self, do_lower_case):
        super().__init__()
        self.do_lower_case = do_lower_case

    def __missing__(self, cp):
        v = char_map(chr(cp), self.do_lower_case)
        self[cp] = v
        return v


# --------------------------------------------------------------------------------------------------------------------
# Character classes for the in-graph version (tokenization.layers), as RE2 classes built from the same predicates.

def _all_chars():
    # Planes 4-13 are unassigned (Cn) and planes 15-16 are private use (Co): for all of them every predicate below is
    # false and lower-casing is the identity, so they are skipped (checked by tests/tokenization).
    for cp in range(0x40000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        yield cp
    yield from range(0xE0000, 0xF0000)


def _ranges(cps):
    out = []
    for cp in cps:
        if out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return out


def re2_class(ranges, negate=False):
    parts = []
    for lo, hi in ranges:
        parts.append(f"\\x{{{lo:X}}}" if lo == hi else f"\\x{{{lo:X}}}-\\x{{{hi:X}}}")
    return "[" + ("^" if negate else "") + "".join(parts) + "]"


@functools.lru_cache(maxsize=None)
def graph_tables(do_lower_case):
    """Everything tokenization.layers needs, computed once per process (~seconds)."""
    remove, space, cjk, punct, cased, ignorable = [], [], [], [], [], []
    lower_keys, lower_vals = [], []
    for cp in _all_chars():
        c = chr(cp)
        if cp == 0 or cp == 0xFFFD or reference._is_control(c):
            remove.append(cp)
            continue
        if reference._is_whitespace(c) or c.isspace():
            space.append(cp)
            continue
        if reference._is_chinese_char(cp):
            cjk.append(cp)
        if reference._is_punctuation(c):
            punct.append(cp)
        if do_lower_case:
            m = _lower_strip(c)
            m = "".join(" " if x.isspace() else x for x in m)
            if m != c:
                lower_keys.append(c)
                lower_vals.append(m)
            # Python's Final_Sigma context, probed with Python itself.
            if (c + SIGMA).lower()[-1] == "\u03c2":
                cased.append(cp)
            elif ("A" + c + SIGMA).lower()[-1] == "\u03c2":
                ignorable.append(cp)
    return {
        "remove": _ranges(remove), "space": _ranges(space), "cjk": _ranges(cjk), "punct": _ranges(punct),
        "cased": _ranges(cased), "ignorable": _ranges(ignorable), "lower_keys": lower_keys, "lower_vals": lower_vals,
    }
