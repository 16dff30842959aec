"""Long words: the original tokenization.py maps a word to [UNK] only when it has more than 200 characters
(WordpieceTokenizer(max_input_chars_per_word=200)), counting characters, not bytes. Every path must agree with the
oracle (tokenization.reference, the original algorithm) for words of 1-250 characters, ASCII and accented, cased and
uncased."""
import functools
import itertools

import pytest
import tensorflow as tf

from tests.tokenization.common import UNCASED_VOCAB
from tokenization import FullTokenizer, load_vocab, reference
from tokenization.layers import BertTextPacker

LENGTHS = range(1, 251)
EMOJI = "\U0001F600"  # 4 bytes in UTF-8, not punctuation: one word
CASED_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "x", "##x", "xx", "##xx", "\u00e9", "##\u00e9",
                "\u00c9", "##\u00c9", EMOJI, "##" + EMOJI]


def _word(pattern, n):
    return "".join(itertools.islice(itertools.cycle(pattern), n))


# (vocab, do_lower_case, character pattern of the words)
CASES = {
    "uncased-ascii": ("uncased", True, "UnWanted"),
    "uncased-accented": ("uncased", True, "\u00c9a\u00e9"),  # accents stripped: 1 character each, 2 bytes before
    "cased-ascii": ("cased", False, "x"),
    "cased-accented": ("cased", False, "\u00e9x\u00c9"),  # 150 characters = 250 bytes
    "cased-4-byte": ("cased", False, EMOJI + "x"),  # 200 characters = 500 bytes
}


@pytest.fixture(scope="module")
def vocab_files(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "cased_vocab.txt"
    path.write_text("\n".join(CASED_TOKENS) + "\n", encoding="utf-8")
    return {"uncased": UNCASED_VOCAB, "cased": str(path)}


@functools.lru_cache(maxsize=None)
def _oracle(vocab_file, do_lower_case, texts):
    # The original FullTokenizer with its own defaults (no limit passed: the oracle's 200 is under test too).
    ref = reference.ReferenceTokenizer(load_vocab(vocab_file), do_lower_case=do_lower_case)
    return [ref.tokenize(t) for t in texts]


def test_oracle_is_the_originals_200_characters():
    vocab = load_vocab(UNCASED_VOCAB)
    ref = reference.ReferenceTokenizer(vocab, do_lower_case=True)
    assert ref.wordpiece_tokenizer.max_input_chars_per_word == 200
    assert ref.tokenize("a" * 200) != ["[UNK]"] and ref.tokenize("a" * 201) == ["[UNK]"]
    assert ref.tokenize("\u00e9" * 200) != ["[UNK]"] and ref.tokenize("\u00e9" * 201) == ["[UNK]"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_path_gives_the_originals_tokens_for_words_of_1_to_250_characters(case, vocab_files):
    which, lower, pattern = CASES[case]
    vocab_file = vocab_files[which]
    texts = tuple(_word(pattern, n) for n in LENGTHS)
    expected = _oracle(vocab_file, lower, texts)
    # The case is meaningful: 101-200 characters give word pieces, 201+ give [UNK].
    assert all(e != ["[UNK]"] for e in expected[:200]) and all(e == ["[UNK]"] for e in expected[200:])
    tok = FullTokenizer(vocab_file, do_lower_case=lower)
    assert tok.tokenize_batch(list(texts)) == expected
    assert [tok.tokenize(t) for t in texts] == expected
    assert [tok.convert_ids_to_tokens(ids) for ids in tok.encode_batch(list(texts))] == expected
    # Words inside a longer text, mixed with another kind of text in one batch (both fast paths at once).
    mixed = [f"{t} \u00e9 {t}" for t in texts[95:205]] + list(texts[95:205])
    assert tok.tokenize_batch(mixed) == [tok._reference.tokenize(t) for t in mixed]
    packer = BertTextPacker(vocab_file, do_lower_case=lower, max_seq_length=8)
    got = packer.tokenize(tf.constant(list(texts))).to_list()
    assert [tok.convert_ids_to_tokens(row) for row in got] == expected


def test_limit_is_a_parameter_for_huggingface_behaviour(vocab_files):
    texts = ["x" * 100, "x" * 101, "\u00e9" * 101, EMOJI * 101, "x" * 150 + " x"]
    hf = FullTokenizer(vocab_files["cased"], do_lower_case=False, max_input_chars_per_word=100)
    ref = reference.ReferenceTokenizer(hf.vocab, do_lower_case=False, max_input_chars_per_word=100)
    expected = [ref.tokenize(t) for t in texts]
    assert expected[1:] == [["[UNK]"], ["[UNK]"], ["[UNK]"], ["[UNK]", "x"]] and expected[0] != ["[UNK]"]
    assert hf.tokenize_batch(texts) == expected
    assert [hf.tokenize(t) for t in texts] == expected
    packer = BertTextPacker(vocab_files["cased"], do_lower_case=False, max_input_chars_per_word=100)
    assert packer.get_config()["max_input_chars_per_word"] == 100
    got = packer.tokenize(tf.constant(texts)).to_list()
    assert [hf.convert_ids_to_tokens(row) for row in got] == expected
