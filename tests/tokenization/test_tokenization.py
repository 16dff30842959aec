import collections
import unicodedata

import numpy as np
import pytest

import bertkit_errors
from tests.tokenization.common import HARD_CASES, UNCASED_VOCAB, bbc_lines
from tokenization import FullTokenizer, _charmap, basic_tokenize, load_vocab, reference

CASED_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Hello", "hello", "H", "##ello", "World", "##s", ",",
                "!", "caf", "##\u00e9", "\u00e9", "e", "##\u0301", "\u4e2d", "\u2026", ".", "'", "$", "5", "a", "##a",
                "\u03a3", "\u03c3", "\u03c2", "x", "##x", "\uff26", "\ufb01", "##ne", "STRASSE", "\u0130", "i"]


@pytest.fixture(scope="module")
def uncased():
    return FullTokenizer(UNCASED_VOCAB, do_lower_case=True)


@pytest.fixture(scope="module")
def cased_on_uncased_vocab():
    return FullTokenizer(UNCASED_VOCAB, do_lower_case=False)


@pytest.fixture(scope="module")
def cased_vocab(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "cased_vocab.txt"
    path.write_text("\n".join(CASED_TOKENS) + "\n", encoding="utf-8")
    return str(path)


def _ref(tok, texts):
    return [tok._reference.tokenize(t) for t in texts]


def test_reference_matches_original_examples():
    vocab = collections.OrderedDict((t, i) for i, t in enumerate(
        ["[UNK]", "[CLS]", "[SEP]", "want", "##want", "##ed", "wa", "un", "runn", "##ing", ","]))
    ref = reference.ReferenceTokenizer(vocab, do_lower_case=True)
    assert ref.tokenize("UNwant\u00E9d,running") == ["un", "##want", "##ed", ",", "runn", "##ing"]
    basic = reference.BasicTokenizer(do_lower_case=True)
    assert basic.tokenize(" \tHeLLo!how  \n Are yoU?  ") == ["hello", "!", "how", "are", "you", "?"]
    assert basic.tokenize("H\u00E9llo") == ["hello"]
    assert basic.tokenize("ah\u535A\u63A8zz") == ["ah", "\u535A", "\u63A8", "zz"]
    assert reference.BasicTokenizer(do_lower_case=False).tokenize(" \tHeLLo!how  \n Are yoU?  ") == [
        "HeLLo", "!", "how", "Are", "yoU", "?"]
    wp = reference.WordpieceTokenizer(vocab)
    assert wp.tokenize("unwantedX running") == ["[UNK]", "runn", "##ing"]
    assert wp.tokenize("a" * 201) == ["[UNK]"]  # the original's max_input_chars_per_word=200


@pytest.mark.parametrize("which", ["uncased", "cased_on_uncased_vocab"])
def test_hard_cases_equal_reference(which, request):
    tok = request.getfixturevalue(which)
    expected = _ref(tok, HARD_CASES)
    got = tok.tokenize_batch(HARD_CASES)
    for text, e, g in zip(HARD_CASES, expected, got):
        assert g == e, repr(text)
    assert [tok.tokenize(t) for t in HARD_CASES] == expected
    ids = tok.encode_batch(HARD_CASES)
    assert all(a.dtype == np.int32 for a in ids)
    assert [a.tolist() for a in ids] == [tok.convert_tokens_to_ids(e) for e in expected]


@pytest.mark.parametrize("lower", [True, False])
def test_hard_cases_small_cased_vocab(cased_vocab, lower):
    tok = FullTokenizer(cased_vocab, do_lower_case=lower)
    assert tok.tokenize_batch(HARD_CASES) == _ref(tok, HARD_CASES)
    assert tok.tokenize("Hellos, World!") == (["hello", "##s", ",", "[UNK]", "!"] if lower
                                              else ["Hello", "##s", ",", "World", "!"])


def test_known_fast_bert_differences_are_fixed(uncased):
    # tf-text's stock normaliser (NFKC_Casefold) would give 'fullwidth', 'fine', '...' and split control chars.
    assert uncased.tokenize("\uff26\uff55\uff4c\uff4c") == uncased._reference.tokenize("\uff26\uff55\uff4c\uff4c")
    assert uncased.tokenize("\ufb01ne")[0] != "fine"
    assert uncased.tokenize("wait\u2026") == ["wait", "\u2026"]
    assert uncased.tokenize("ab\x07cd") == uncased._reference.tokenize("abcd")
    assert uncased.tokenize("\u00e9" * 201) == ["[UNK]"]          # 201 chars, 402 bytes
    assert uncased.tokenize("\u00e9" * 150) != ["[UNK]"]          # 150 chars, 300 bytes > 200 bytes
    assert uncased.tokenize("\u039f\u0394\u039f\u03a3") == uncased._reference.tokenize("\u039f\u0394\u039f\u03a3")


def test_mixed_batch_order_and_bytes(uncased):
    texts = ["plain ascii", "caf\u00e9 \u00a3", "\u03a3\u039f\u03a3", "x\x01y", b"bytes in\xc3\xa9", "", "z" * 200]
    got = uncased.tokenize_batch(texts)
    assert got == [uncased._reference.tokenize(t) for t in texts]
    assert uncased.tokenize_batch([]) == [] and uncased.encode_batch([]) == []


def test_bbc_lines_equal_reference(uncased):
    lines = bbc_lines()
    sample = lines[:1500] + [l for l in lines if not l.isascii()][:500]
    assert uncased.tokenize_batch(sample) == _ref(uncased, sample)


def test_bbc_lines_cased_equal_reference(cased_on_uncased_vocab):
    lines = bbc_lines(limit=600)
    assert cased_on_uncased_vocab.tokenize_batch(lines) == _ref(cased_on_uncased_vocab, lines)


def test_char_map_agrees_with_reference_on_every_bmp_char():
    basic = {lower: reference.BasicTokenizer(do_lower_case=lower) for lower in (True, False)}
    for lower in (True, False):
        for cp in range(0, 0x10000, 7):
            c = chr(cp)
            if 0xD800 <= cp <= 0xDFFF or _charmap.is_contextual(c, lower):
                continue
            text = "a" + c + "b " + c
            assert basic_tokenize(text, lower) == basic[lower].tokenize(text), hex(cp)


def test_skipped_planes_are_unassigned_or_private():
    for cp in range(0x40000, 0xE0000, 101):
        assert unicodedata.category(chr(cp)) == "Cn", hex(cp)
    for cp in range(0xF0000, 0x110000, 101):
        assert unicodedata.category(chr(cp)) in ("Co", "Cn"), hex(cp)


def test_convert_round_trip(uncased):
    toks = uncased.tokenize("The quick brown fox")
    ids = uncased.convert_tokens_to_ids(toks)
    assert uncased.convert_ids_to_tokens(ids) == toks
    assert uncased.vocab["[CLS]"] == 101 and uncased.inv_vocab[102] == "[SEP]"
    assert isinstance(uncased.vocab, collections.OrderedDict) and len(uncased.vocab) == 30522


def test_load_vocab_errors(tmp_path):
    with pytest.raises(bertkit_errors.UserError, match="missing.txt"):
        load_vocab(str(tmp_path / "missing.txt"))
    bad = tmp_path / "nomask.txt"
    bad.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n", encoding="utf-8")
    with pytest.raises(bertkit_errors.UserError, match=r"nomask.txt.*\[MASK\]"):
        load_vocab(str(bad))
    with pytest.raises(bertkit_errors.UserError, match="nomask.txt"):
        FullTokenizer(str(bad))
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"[UNK]\n[CLS]\n\xff\xfe\n")
    with pytest.raises(bertkit_errors.UserError, match="binary.txt:3"):
        load_vocab(str(binary))
