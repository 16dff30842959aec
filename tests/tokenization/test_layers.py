import os

import numpy as np
import pytest
import tensorflow as tf

from tests.tokenization.common import HARD_CASES, UNCASED_VOCAB, bbc_lines
from tokenization import FullTokenizer
from tokenization.layers import BertTextPacker

T = 24


def _truncate_seq_pair(tokens_a, tokens_b, max_length):  # verbatim from the original create_*_data code
    while True:
        total_length = len(tokens_a) + len(tokens_b)
        if total_length <= max_length:
            break
        if len(tokens_a) > len(tokens_b):
            tokens_a.pop()
        else:
            tokens_b.pop()


def _python_pack(tok, a, b, max_len):
    ta = tok.tokenize(a)
    tb = tok.tokenize(b) if b is not None else None
    if tb is not None:
        _truncate_seq_pair(ta, tb, max_len - 3)
    else:
        ta = ta[:max_len - 2]
    tokens = ["[CLS]"] + ta + ["[SEP]"]
    seg = [0] * len(tokens)
    if tb is not None:
        tokens += tb + ["[SEP]"]
        seg += [1] * (len(tb) + 1)
    ids = tok.convert_tokens_to_ids(tokens)
    mask = [1] * len(ids)
    pad = max_len - len(ids)
    return ids + [0] * pad, mask + [0] * pad, seg + [0] * pad


@pytest.fixture(scope="module")
def tok():
    return FullTokenizer(UNCASED_VOCAB, do_lower_case=True)


@pytest.fixture(scope="module")
def packer():
    return BertTextPacker(UNCASED_VOCAB, do_lower_case=True, max_seq_length=T)


A = ["hello world", "", "one two three four five six seven eight nine ten eleven twelve thirteen", "x " * 200,
     "Caf\u00e9 \u4e2d\u6587 \u2026", "a b c", "short", "\u039f\u0394\u039f\u03a3 \u03a3\u0391\u03a3"]
B = ["", "again", "one two three four five six seven eight nine ten eleven twelve thirteen", "y " * 5,
     "z " * 200, "d e f", "much longer text that goes on and on and on and on and on and on", "\ufb01ne"]


def _check(packer, tok, a, b):
    out = packer((tf.constant(a), tf.constant(b))) if b is not None else packer(tf.constant(a))
    for i in range(len(a)):
        ids, mask, seg = _python_pack(tok, a[i], None if b is None else b[i], T)
        assert out["input_ids"].numpy()[i].tolist() == ids, (a[i], None if b is None else b[i])
        assert out["input_mask"].numpy()[i].tolist() == mask
        assert out["segment_ids"].numpy()[i].tolist() == seg
    for k in ("input_ids", "input_mask", "segment_ids"):
        assert out[k].dtype == tf.int32 and out[k].shape == (len(a), T)


def test_pairs_and_singles(packer, tok):
    _check(packer, tok, A, B)
    _check(packer, tok, A, None)
    _check(packer, tok, B, A)


def test_truncation_all_length_combinations(packer, tok):
    a, b = [], []
    for la in range(0, 26, 3):
        for lb in range(0, 26, 2):
            a.append("a " * la)
            b.append("b " * lb)
    _check(packer, tok, a, b)


def test_in_graph_tokens_equal_reference(packer, tok):
    lines = HARD_CASES + bbc_lines(limit=300)
    ids = packer.tokenize(tf.constant(lines)).to_list()
    for text, row in zip(lines, ids):
        assert tok.convert_ids_to_tokens(row) == tok._reference.tokenize(text), repr(text)


def test_cased_in_graph_tokens_equal_reference():
    packer = BertTextPacker(UNCASED_VOCAB, do_lower_case=False, max_seq_length=T)
    tok = FullTokenizer(UNCASED_VOCAB, do_lower_case=False)
    ids = packer.tokenize(tf.constant(HARD_CASES)).to_list()
    for text, row in zip(HARD_CASES, ids):
        assert tok.convert_ids_to_tokens(row) == tok._reference.tokenize(text), repr(text)


def test_saved_model_with_vocab_asset(packer, tmp_path):
    module = tf.Module()
    module.packer = packer
    module.fn = tf.function(lambda a, b: packer((a, b)),
                            input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.string)])
    path = str(tmp_path / "sm")
    tf.saved_model.save(module, path, signatures={"serving_default": module.fn})
    assets = os.listdir(os.path.join(path, "assets"))
    assert os.path.basename(UNCASED_VOCAB) in assets
    loaded = tf.saved_model.load(path)
    a, b = tf.constant(A), tf.constant(B)
    expected = packer((a, b))
    got = loaded.signatures["serving_default"](a=a, b=b)
    for k in expected:
        np.testing.assert_array_equal(got[k].numpy(), expected[k].numpy())
