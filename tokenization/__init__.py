"""BERT WordPiece tokenization: the original API, plus fast batch paths built on tensorflow-text.

Usage: `from tokenization import FullTokenizer, load_vocab`. Importing the package does not import TensorFlow: the
fast path's TensorFlow functions (`tokenization/wordpiece_ops.py`) are built on first use.

Every path gives exactly the tokens of `tokenization.reference` (the original Google BERT algorithm):
  * ASCII texts without control characters (the bulk of English text) go through tensorflow-text's
    FastWordpieceTokenizer end to end (its whitespace/punctuation pre-tokenization equals the original's on ASCII, and
    for ASCII its max_bytes_per_word equals the original's max_input_chars_per_word), after ASCII lower-casing;
  * other texts are normalised in Python with `str.translate` through a cached per-character table derived from the
    reference itself (`tokenization._charmap`), split on whitespace, and looked up word by word with
    FastWordpieceTokenizer (words over max_input_chars_per_word characters -> [UNK], counted in Python as characters,
    not bytes, as in the original);
  * the rare texts whose tokenization depends on context beyond one character (capital sigma's final form, reordering
    of non-Mn combining marks, lone surrogates) use the reference directly.
"""
import concurrent.futures
import os
import re

import numpy as np
from absl import logging

import bertkit_errors
from tokenization import _charmap, reference

REQUIRED_TOKENS = ("[UNK]", "[CLS]", "[SEP]", "[MASK]")
# The original tokenization.py: WordpieceTokenizer(max_input_chars_per_word=200); HuggingFace uses 100.
MAX_INPUT_CHARS_PER_WORD = 200
_BATCH = 8192

__all__ = ["FullTokenizer", "load_vocab", "basic_tokenize", "REQUIRED_TOKENS", "convert_to_unicode"]

convert_to_unicode = reference.convert_to_unicode
_EXECUTOR = None


def _num_workers():
    return max(1, min(8, os.cpu_count() or 1))


def _executor():
    global _EXECUTOR
    if _EXECUTOR is None:
        _EXECUTOR = concurrent.futures.ThreadPoolExecutor(_num_workers(), thread_name_prefix="bertkit-tokenize")
    return _EXECUTOR
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def load_vocab(vocab_file):
    """Vocab file (one token a line, id = line number) -> OrderedDict token -> id.

    Raises UserError naming the file if it is missing, unreadable, not UTF-8, or lacks [UNK] [CLS] [SEP] [MASK].
    """
    path = os.fspath(vocab_file)
    if not os.path.isfile(path):
        raise bertkit_errors.UserError(f"{path}: vocab file not found")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise bertkit_errors.UserError(f"{path}: cannot read vocab file ({e.strerror})") from None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise bertkit_errors.UserError(f"{path}:{line}: vocab file is not valid UTF-8") from None
    vocab = reference.read_vocab_tokens(path)
    warn_duplicate_tokens(path, vocab, data.decode("utf-8").split("\n"))
    missing = [t for t in REQUIRED_TOKENS if t not in vocab]
    if missing:
        raise bertkit_errors.UserError(f"{path}: vocab file lacks required token(s) {' '.join(missing)}")
    return vocab


def duplicate_token(lines):
    """(token, first line, second line) of the first token two lines of a vocab file share (1-based line numbers,
    each line stripped as the loader does), or None."""
    seen = {}
    for number, line in enumerate(lines, 1):
        token = line.strip()
        if token in seen:
            return token, seen[token], number
        seen[token] = number
    return None


def warn_duplicate_tokens(path, vocab, lines):
    """Log a warning naming the first duplicated token of a vocab file (its id is the later line's, as in the
    original BERT); `vocab` is the loaded token -> id map, `lines` the file's lines. Returns the warning or None."""
    if not vocab or len(vocab) == max(vocab.values()) + 1:
        return None
    dup = duplicate_token(lines)
    if dup is None:
        return None
    token, first, second = dup
    extra = max(vocab.values()) + 1 - len(vocab)
    message = (f"{path}:{second}: duplicate token {token!r} (also on line {first}; it gets the id of its last line); "
               f"{extra} duplicate line(s) in all")
    logging.warning("%s", message)
    return message


def check_max_input_chars(value):
    """max_input_chars_per_word must be a positive int (words longer than it become [UNK])."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise bertkit_errors.UserError(f"max_input_chars_per_word={value!r}: must be a positive integer")
    return value


class FullTokenizer:
    """Runs end-to-end tokenization (original BERT semantics); batch methods use the fast tensorflow-text path."""

    def __init__(self, vocab_file, do_lower_case=True, max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD):
        self.vocab_file = os.fspath(vocab_file)
        self.do_lower_case = bool(do_lower_case)
        self.max_input_chars_per_word = check_max_input_chars(max_input_chars_per_word)
        self.vocab = load_vocab(self.vocab_file)
        self.inv_vocab = {v: k for k, v in self.vocab.items()}
        self._reference = reference.ReferenceTokenizer(self.vocab, do_lower_case=self.do_lower_case,
                                                       max_input_chars_per_word=self.max_input_chars_per_word)
        self.basic_tokenizer = self._reference.basic_tokenizer
        self.wordpiece_tokenizer = self._reference.wordpiece_tokenizer
        self._table = _charmap.CharTable(self.do_lower_case)
        self._contextual = {}
        self._tf = None

    # ---- original API -------------------------------------------------------------------------------------------
    def tokenize(self, text):
        return self.tokenize_batch([text])[0]

    def convert_tokens_to_ids(self, tokens):
        return [self.vocab[t] for t in tokens]

    def convert_ids_to_tokens(self, ids):
        return [self.inv_vocab[int(i)] for i in ids]

    # ---- batch API ----------------------------------------------------------------------------------------------
    def tokenize_batch(self, texts):
        """list of str (or bytes) -> list[list[str]], identical to the original tokenize() on each text."""
        out = []
        id_to_token = self._id_to_token_array()
        for start in range(0, len(texts), _BATCH):
            flat, lengths, extra = self._encode_flat(texts[start:start + _BATCH])
            tokens = id_to_token[flat].tolist()
            ends = np.cumsum(lengths).tolist()
            begin = 0
            chunk = []
            for end in ends:
                chunk.append(tokens[begin:end])
                begin = end
            for i, toks in extra.items():
                chunk[i] = toks
            out.extend(chunk)
        return out

    def encode_batch(self, texts):
        """list of str (or bytes) -> list of int32 numpy arrays of token ids."""
        out = []
        for start in range(0, len(texts), _BATCH):
            flat, lengths, extra = self._encode_flat(texts[start:start + _BATCH])
            chunk = np.split(flat, np.cumsum(lengths)[:-1]) if len(lengths) else []
            for i, toks in extra.items():
                chunk[i] = np.asarray(self.convert_tokens_to_ids(toks), dtype=np.int32)
            out.extend(chunk)
        return out

    # ---- implementation -----------------------------------------------------------------------------------------
    def _id_to_token_array(self):
        if getattr(self, "_id_to_token", None) is None:
            size = max(self.inv_vocab) + 1
            arr = np.empty(size, dtype=object)
            arr[:] = "[UNK]"
            for i, t in self.inv_vocab.items():
                arr[i] = t
            self._id_to_token = arr
        return self._id_to_token

    def _ops(self):
        if self._tf is None:
            # TensorFlow on first use only: create_pretraining_data.py forks its numpy workers after importing us
            from tokenization import wordpiece_ops

            self._tf = wordpiece_ops.build_ops(self.vocab, self.do_lower_case, self.max_input_chars_per_word)
        return self._tf

    def _run_parallel(self, fn, items):
        """fn over chunks of items on all cores (TF ops release the GIL); concatenated (flat, row_lengths)."""
        workers = _num_workers()
        if workers == 1 or len(items) < 256:
            return fn(items)
        step = -(-len(items) // workers)
        chunks = [items[i:i + step] for i in range(0, len(items), step)]
        results = list(_executor().map(fn, chunks))
        return (np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results]))

    def _encode_flat(self, texts):
        """-> (flat int32 ids, per-text token counts, {index: tokens} for texts done by the reference)."""
        run_ascii, run_words, pos_to_id, remap = self._ops()
        texts = [t if isinstance(t, str) else convert_to_unicode(t) for t in texts]
        n = len(texts)
        joined = "\n".join(texts)
        if joined.isascii() and not _ASCII_CONTROL.search(joined):
            flat, lengths = self._run_parallel(run_ascii, texts)
            return (pos_to_id[flat] if remap else flat), lengths, {}
        extra = {}
        fast_idx, fast_txt = [], []
        slow_idx, slow_words, slow_counts = [], [], []
        table = self._table
        limit = self.max_input_chars_per_word
        for i, t in enumerate(texts):
            if t.isascii() and not _ASCII_CONTROL.search(t):
                fast_idx.append(i)
                fast_txt.append(t)
                continue
            if self._needs_reference(t):
                extra[i] = self._reference.tokenize(t)
                continue
            words = t.translate(table).split()
            for j, w in enumerate(words):
                if len(w) > limit:
                    words[j] = "[UNK]"
            slow_idx.append(i)
            slow_counts.append(len(words))
            slow_words.extend(words)
        lengths = np.zeros(n, dtype=np.int64)
        flats = []
        if fast_txt:
            flat, rl = self._run_parallel(run_ascii, fast_txt)
            lengths[fast_idx] = rl
            flats.append(flat)
        if slow_words:
            flat, word_rl = self._run_parallel(run_words, slow_words)
            owner = np.repeat(np.arange(len(slow_idx)), slow_counts)
            lengths[slow_idx] = np.bincount(owner, weights=word_rl, minlength=len(slow_idx)).astype(np.int64)
            flats.append(flat)
        # `flats` holds the fast texts' ids then the slow texts'; gather them back into text order.
        order = np.asarray(fast_idx + slow_idx, dtype=np.int64)
        src_start = np.zeros(n, dtype=np.int64)
        if len(order):
            group_lengths = lengths[order]
            src_start[order] = np.cumsum(group_lengths) - group_lengths
        out_start = np.cumsum(lengths) - lengths
        total = int(lengths.sum())
        gather = np.repeat(src_start - out_start, lengths) + np.arange(total)
        flat_all = np.concatenate(flats)[gather] if total else np.zeros(0, np.int32)
        if remap:
            flat_all = pos_to_id[flat_all]
        return flat_all.astype(np.int32, copy=False), lengths, extra

    def _needs_reference(self, t):
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            return True
        if not self.do_lower_case:
            return False
        ctx = self._contextual
        for c in set(t):
            v = ctx.get(c)
            if v is None:
                v = ctx[c] = _charmap.is_contextual(c, True)
            if v:
                return True
        return False


_BASIC = {}


def basic_tokenize(text, do_lower_case=True):
    """The original BasicTokenizer's tokens for `text` (what WordPiece then splits), on the fast per-character path."""
    state = _BASIC.get(do_lower_case)
    if state is None:
        state = _BASIC[do_lower_case] = (_charmap.CharTable(do_lower_case), {},
                                         reference.BasicTokenizer(do_lower_case=do_lower_case))
    table, ctx, basic = state
    text = convert_to_unicode(text)
    if do_lower_case and not text.isascii():
        for c in set(text):
            v = ctx.get(c)
            if v is None:
                v = ctx[c] = _charmap.is_contextual(c, True)
            if v:
                return basic.tokenize(text)
    return text.translate(table).split()
