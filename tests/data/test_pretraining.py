"""Pretraining instance logic (numpy, no TensorFlow): structure, truncation, masking statistics, NSP/SOP, n-grams."""
import random

import numpy as np
import pytest

from data import pretraining
from tests.data import test_pretraining_helpers as H


def _features(chunk, cfg, chunk_index=0):
    rows, rng = pretraining.chunk_rows(chunk, chunk_index, cfg)
    feats, stats = pretraining.build_features(chunk.ids, rows, cfg, rng)
    return rows, feats, stats


# ---- truncation ------------------------------------------------------------------------------------------------
def test_truncation_counts_match_the_original_loop():
    rng = random.Random(0)
    for _ in range(3000):
        la, lb, m = rng.randint(1, 80), rng.randint(1, 80), rng.randint(2, 100)
        a, b = list(range(la)), list(range(lb))
        H.original_truncate(a, b, m, rng)
        cut_a, cut_b = pretraining.truncation_counts(la, lb, m)
        assert (la - len(a), lb - len(b)) == (int(cut_a), int(cut_b)), (la, lb, m)


# ---- instance structure ------------------------------------------------------------------------------------------
def test_sequences_are_cls_a_sep_b_sep_with_padding():
    chunk = H.word_chunk(num_docs=40)
    cfg = H.config()
    rows, feats, _ = _features(chunk, cfg)
    ids, mask, seg = feats["input_ids"], feats["input_mask"], feats["segment_ids"]
    tokens = H.restore_tokens(feats)
    for r in range(len(rows)):
        la, lb = rows[r, 1] - rows[r, 0], rows[r, 3] - rows[r, 2]
        n = 3 + la + lb
        assert la >= 1 and lb >= 1 and n <= cfg.max_seq_length
        assert tokens[r, 0] == cfg.cls_id and tokens[r, 1 + la] == cfg.sep_id and tokens[r, n - 1] == cfg.sep_id
        assert list(tokens[r, 1:1 + la]) == list(chunk.ids[rows[r, 0]:rows[r, 1]])
        assert list(tokens[r, 2 + la:n - 1]) == list(chunk.ids[rows[r, 2]:rows[r, 3]])
        assert mask[r, :n].all() and not mask[r, n:].any() and not ids[r, n:].any()
        assert not seg[r, :2 + la].any() and seg[r, 2 + la:n].all() and not seg[r, n:].any()


def test_statistics_match_the_original_algorithm():
    """Same corpus through the original (list based) algorithm and ours: instance count, lengths, label balance."""
    chunk = H.word_chunk(num_docs=300, seed=3)
    docs = H.chunk_documents(chunk)
    cfg = H.config(max_seq_length=64, dupe_factor=4)
    ref = []
    rng = random.Random(1)
    for _ in range(cfg.dupe_factor):
        ref += H.original_instances(docs, cfg.max_seq_length, cfg.short_seq_prob, rng)
    rows, _ = pretraining.chunk_rows(chunk, 0, cfg)
    ours_len = (rows[:, 1] - rows[:, 0] + rows[:, 3] - rows[:, 2]).mean()
    ref_len = np.mean([len(a) + len(b) for a, b, _ in ref])
    assert abs(len(rows) - len(ref)) / len(ref) < 0.05
    assert abs(ours_len - ref_len) / ref_len < 0.05
    assert abs(rows[:, 4].mean() - np.mean([r for _, _, r in ref])) < 0.04
    assert abs((rows[:, 1] - rows[:, 0]).mean() - np.mean([len(a) for a, _, _ in ref])) / ours_len < 0.05


def test_nsp_random_next_comes_from_another_document():
    chunk, doc_of, _ = H.unique_id_chunk(num_docs=60)
    cfg = H.config(vocab_size=int(chunk.ids.max()) + 1, max_seq_length=48)
    rows, _ = pretraining.chunk_rows(chunk, 0, cfg)
    labels = rows[:, 4]
    assert 0.45 < labels.mean() < 0.65  # single-sentence chunks are always random next, as in the original
    for a0, a1, b0, b1, label in rows:
        da, db = {doc_of[i] for i in chunk.ids[a0:a1]}, {doc_of[i] for i in chunk.ids[b0:b1]}
        assert len(da) == 1 and len(db) == 1
        if label:
            assert da != db
        else:
            assert da == db and chunk.ids[a1 - 1] < chunk.ids[b0]


def test_sop_segments_come_from_one_document_and_label_1_means_swapped():
    chunk, doc_of, _ = H.unique_id_chunk(num_docs=60)
    cfg = H.config(vocab_size=int(chunk.ids.max()) + 1, max_seq_length=48, sentence_order_prediction=True)
    rows, feats, stats = _features(chunk, cfg)
    tokens = H.restore_tokens(feats)
    assert 0.45 < rows[:, 4].mean() < 0.55
    for r in range(len(rows)):
        la = rows[r, 1] - rows[r, 0]
        n = int(feats["input_mask"][r].sum())
        a, b = tokens[r, 1:1 + la], tokens[r, 2 + la:n - 1]
        assert {doc_of[i] for i in a} | {doc_of[i] for i in b} == {doc_of[a[0]]}
        assert np.all(np.diff(a) > 0) and np.all(np.diff(b) > 0)
        if feats["next_sentence_labels"][r, 0] == 1:
            assert b[-1] < a[0]  # B is the earlier text: swapped
        else:
            assert a[-1] < b[0]


# ---- masking -----------------------------------------------------------------------------------------------------
def test_masking_statistics_and_80_10_10():
    chunk, _, _ = H.unique_id_chunk(num_docs=300, seed=5)
    cfg = H.config(vocab_size=int(chunk.ids.max()) + 1, max_seq_length=64, max_predictions_per_seq=20)
    rows, feats, stats = _features(chunk, cfg)
    n_tok = feats["input_mask"].sum(axis=1)
    n_masked = (feats["masked_lm_weights"] > 0).sum(axis=1)
    expected = np.minimum(20, np.maximum(1, np.round(n_tok * 0.15)))
    assert np.array_equal(n_masked, np.minimum(expected, n_tok - 3))
    assert 0.13 < n_masked.sum() / n_tok.sum() < 0.17
    original = H.restore_tokens(feats)
    w = feats["masked_lm_weights"] > 0
    pos = feats["masked_lm_positions"]
    rows_idx = np.broadcast_to(np.arange(len(pos))[:, None], pos.shape)
    now = feats["input_ids"][rows_idx[w], pos[w]]
    labels = feats["masked_lm_ids"][w]
    assert np.array_equal(labels, original[rows_idx[w], pos[w]])
    as_mask = (now == cfg.mask_id).mean()
    kept = (now == labels).mean()
    assert 0.77 < as_mask < 0.83 and 0.08 < kept < 0.12 and 0.08 < 1 - as_mask - kept < 0.12
    assert stats["masked"] == w.sum() and stats["masked_as_mask"] == (now == cfg.mask_id).sum()
    # positions: sorted, never [CLS]/[SEP]/padding, zero-padded with weight 0
    for r in range(len(pos)):
        p = pos[r, w[r]]
        assert np.all(np.diff(p) > 0)
        assert np.all(original[r, p] != cfg.cls_id) and np.all(original[r, p] != cfg.sep_id)
        assert np.all(p < n_tok[r])
        assert not pos[r, ~w[r]].any() and not feats["masked_lm_ids"][r, ~w[r]].any()
    assert set(np.unique(feats["masked_lm_weights"])) <= {0.0, 1.0}


def _words(tokens_row, n, cfg):
    """Positions of each word of one restored row ('##' joins the previous candidate token, as in the original)."""
    words = []
    for t in range(1, n - 1):
        tok = tokens_row[t]
        if tok == cfg.sep_id:
            continue
        if cfg.is_subword[tok] and words:
            words[-1].append(t)
        else:
            words.append([t])
    return words


@pytest.mark.parametrize("ngram", [1, 3])
def test_whole_word_and_ngram_masking_mask_whole_words(ngram):
    chunk = H.word_chunk(num_docs=150, seed=2)
    cfg = H.config(do_whole_word_mask=True, max_ngram_size=ngram, max_seq_length=64, max_predictions_per_seq=10)
    rows, feats, _ = _features(chunk, cfg)
    original = H.restore_tokens(feats)
    w = feats["masked_lm_weights"] > 0
    adjacent = masked_words = 0
    for r in range(len(rows)):
        n = int(feats["input_mask"][r].sum())
        masked = set(feats["masked_lm_positions"][r, w[r]].tolist())
        assert masked and len(masked) <= 10
        flags = []
        for word in _words(original[r], n, cfg):
            covered = [t in masked for t in word]
            assert all(covered) or not any(covered), "a word is partly masked"
            flags.append(covered[0])
        masked_words += sum(flags)
        adjacent += sum(a and b for a, b in zip(flags, flags[1:]))
    ratio = adjacent / masked_words
    if ngram == 1:
        assert ratio < 0.25
    else:
        assert ratio > 0.3  # n-grams mask runs of consecutive words


def test_ngram_sizes_favour_short_ngrams():
    """With room for every n-gram, the first n-gram drawn has p(n) = (1/n) / sum(1/k)."""
    cfg = H.config(max_ngram_size=3, do_whole_word_mask=True, max_seq_length=40, max_predictions_per_seq=40,
                   masked_lm_prob=1.0)
    word = H.tiny_vocab()["w1"]
    b, t = 6000, 40
    tokens = np.full((b, t), word, dtype=np.int64)
    cand = np.zeros((b, t), dtype=bool)
    cand[:, 1:4] = True  # three one-token words: the only start with 3 available words is word 0
    n_tokens = np.full(b, 3)  # num_to_predict = 3 -> the first n-gram always fits
    sizes = []
    rng = np.random.default_rng(0)
    for _ in range(3):
        chosen = pretraining.choose_masked_mask(tokens, cand, n_tokens, cfg, rng)
        sizes.append(chosen.sum(axis=1))
    sizes = np.concatenate(sizes)
    # never more than num_to_predict; ALBERT skips (does not shorten further) an n-gram overlapping masked words, so
    # a row may stop short, but most rows complete
    assert sizes.min() >= 1 and sizes.max() == 3 and (sizes == 3).mean() > 0.6
    u = rng.random(200000)
    avail = np.full(len(u), 3)
    n = pretraining.sample_ngram_sizes(u, avail, 3)
    freq = np.bincount(n, minlength=4)[1:] / len(n)
    expected = np.array([1, 1 / 2, 1 / 3]) / (1 + 1 / 2 + 1 / 3)
    assert np.allclose(freq, expected, atol=0.01)
    n2 = pretraining.sample_ngram_sizes(u, np.full(len(u), 2), 3)
    assert n2.max() == 2 and abs((n2 == 1).mean() - 2 / 3) < 0.01


# ---- records and determinism ---------------------------------------------------------------------------------------
def test_chunk_records_are_deterministic_and_seeded_by_chunk():
    chunk = H.word_chunk(num_docs=30)
    cfg = H.config()
    blob1, ends1, stats1 = pretraining.build_chunk_records(chunk, 3, cfg)
    blob2, ends2, _ = pretraining.build_chunk_records(chunk, 3, cfg)
    blob3, _, _ = pretraining.build_chunk_records(chunk, 4, cfg)
    assert blob1 == blob2 and np.array_equal(ends1, ends2)
    assert blob1 != blob3
    assert len(ends1) == stats1["instances"] and ends1[-1] == len(blob1)
    assert stats1["documents"] == 30


def test_read_vocab_errors(tmp_path):
    from bertkit_errors import UserError

    with pytest.raises(UserError, match="--vocab_file=.*not found"):
        pretraining.read_vocab(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("[PAD]\n[UNK]\n[CLS]\nhello\n")
    with pytest.raises(UserError, match=r"lacks the special token\(s\) \[SEP\] \[MASK\]"):
        pretraining.read_vocab(bad)
    vocab = pretraining.read_vocab(H.write_tiny_vocab(tmp_path / "v.txt"))
    info = pretraining.vocab_info(vocab)
    assert info["cls_id"] == 2 and info["sep_id"] == 3 and info["mask_id"] == 4
    assert info["is_subword"].sum() == len(H.PIECES)


def test_reading_documents_in_chunks(tmp_path, monkeypatch):
    from bertkit_errors import UserError
    from data import pretraining_writer

    a = tmp_path / "a.txt"
    a.write_bytes(b"\xef\xbb\xbfs1\r\ns2\n\n\n  \nt1\n\nu1\nu2")  # BOM, CRLF, several blank lines, no final newline
    b = tmp_path / "b.txt"
    b.write_text("v1\nv2\n\nw1\n", encoding="utf-8")
    monkeypatch.setattr(pretraining_writer, "_READ_BLOCK", 5)  # lines cross block boundaries
    chunks = list(pretraining_writer.iter_document_chunks([str(a), str(b)], 2))
    assert chunks == [[["s1", "s2"], ["t1"]], [["u1", "u2"], ["v1", "v2"]], [["w1"]]]  # a new file: a new doc
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\nok\n\nfine \xc3\x28 here\n")
    with pytest.raises(UserError, match=r"bad.txt:4: invalid UTF-8 \(byte 0xc3 at column 6\)"):
        list(pretraining_writer.iter_document_chunks([str(bad)], 10))
