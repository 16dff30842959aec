"""data/pipeline.py: batching/int32 casting, gzip detection, per-worker sharding, the eager length check and
dynamic re-masking."""
import gzip
import os

import numpy as np
import pytest
import tensorflow as tf

import bertkit_errors
from data import pipeline

SEQ, PREDS = 16, 4


def _int(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _example(i, seq=SEQ, preds=PREDS):
    """Record i: [CLS] 10+i ... [SEP], originals at masked positions replaced by [MASK]=4; index in segment/labels."""
    n = seq - 4  # some padding
    original = [2] + [10 + (i + j) % 50 for j in range(n - 2)] + [3]
    ids = list(original)
    pos = [1, 2, 3][:preds - 1]
    for p in pos:
        ids[p] = 4
    feats = {
        "input_ids": _int(ids + [0] * (seq - n)), "input_mask": _int([1] * n + [0] * (seq - n)),
        "segment_ids": _int([0] * seq), "masked_lm_positions": _int(pos + [0] * (preds - len(pos))),
        "masked_lm_ids": _int([original[p] for p in pos] + [0] * (preds - len(pos))),
        "masked_lm_weights": tf.train.Feature(float_list=tf.train.FloatList(
            value=[1.0] * len(pos) + [0.0] * (preds - len(pos)))),
        "next_sentence_labels": _int([i]),  # the record's index, to trace order and sharding
    }
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString(), original


def _write(path, indices, compress=False, **kw):
    opts = tf.io.TFRecordOptions(compression_type="GZIP" if compress else "")
    with tf.io.TFRecordWriter(path, opts) as w:
        for i in indices:
            w.write(_example(i, **kw)[0])
    return path


def _labels(ds):
    return [int(x) for b in ds for x in b["next_sentence_labels"].numpy().ravel()]


def test_eval_batches_in_order_int32_with_gzip(tmp_path):
    a = _write(str(tmp_path / "a.tfrecord"), range(0, 5))
    b = _write(str(tmp_path / "b.tfrecord.gz"), range(5, 12), compress=True)
    with open(b, "rb") as f:
        assert f.read(2) == b"\x1f\x8b"
    ds = pipeline.pretraining_dataset(f"{tmp_path}/a.*,{tmp_path}/b.*", SEQ, PREDS, 4, is_training=False)
    batches = list(ds)
    assert [len(x["input_ids"]) for x in batches] == [4, 4, 4]
    first = batches[0]
    for k in ("input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids",
              "next_sentence_labels"):
        assert first[k].dtype == tf.int32, k
    assert first["masked_lm_weights"].dtype == tf.float32
    assert first["input_ids"].shape == (4, SEQ) and first["masked_lm_positions"].shape == (4, PREDS)
    assert _labels(batches) == list(range(12))


def test_training_repeats_shuffles_drops_remainder(tmp_path):
    path = _write(str(tmp_path / "r.tfrecord"), range(10))
    ds = pipeline.pretraining_dataset(path, SEQ, PREDS, 4, is_training=True, seed=1)
    batches = list(ds.take(10))  # 40 > 10 records: repeated
    assert all(b["input_ids"].shape == (4, SEQ) for b in batches)
    seen = _labels(batches)
    assert set(seen) == set(range(10))
    assert seen[:10] != list(range(10))  # shuffled


def test_sharding_across_input_pipelines(tmp_path):
    files = [_write(str(tmp_path / f"s{k}.tfrecord"), range(10 * k, 10 * k + 10)) for k in range(4)]
    got = []
    for pid in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pid, num_replicas_in_sync=2)
        ds = pipeline.pretraining_dataset(",".join(files), SEQ, PREDS, 8, is_training=False, input_context=ctx)
        assert next(iter(ds))["input_ids"].shape[0] == 4  # per-replica batch of the global 8
        got.append(set(_labels(ds)))
    assert got[0].isdisjoint(got[1]) and got[0] | got[1] == set(range(40))
    # one file, two workers: record-level sharding
    got = []
    for pid in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pid, num_replicas_in_sync=2)
        got.append(set(_labels(pipeline.pretraining_dataset(files[0], SEQ, PREDS, 2, is_training=False,
                                                             input_context=ctx))))
    assert got[0].isdisjoint(got[1]) and got[0] | got[1] == set(range(10))


def test_length_mismatch_names_file_and_both_lengths(tmp_path):
    path = _write(str(tmp_path / "x.tfrecord"), range(3))
    with pytest.raises(bertkit_errors.UserError) as e:
        pipeline.pretraining_dataset(path, 32, PREDS, 2)
    assert str(e.value) == f"{path}: records have max_seq_length {SEQ}, but --max_seq_length=32"
    with pytest.raises(bertkit_errors.UserError) as e:
        pipeline.pretraining_dataset(path, SEQ, 7, 2)
    assert str(e.value) == f"{path}: records have max_predictions_per_seq {PREDS}, but --max_predictions_per_seq=7"


def test_no_match_and_not_records(tmp_path):
    with pytest.raises(bertkit_errors.UserError, match="no file matches"):
        pipeline.pretraining_dataset(str(tmp_path / "none*.tfrecord"), SEQ, PREDS, 2)
    junk = tmp_path / "junk.tfrecord"
    junk.write_bytes(b"this is not a tfrecord file at all, just text\n" * 3)
    with pytest.raises(bertkit_errors.UserError, match="junk.tfrecord"):
        pipeline.check_pretraining_records([str(junk)], SEQ, PREDS)
    ft = tmp_path / "ft.tfrecord"
    with tf.io.TFRecordWriter(str(ft)) as w:
        w.write(tf.train.Example(features=tf.train.Features(feature={"input_ids": _int([1] * SEQ)}))
                .SerializeToString())
    with pytest.raises(bertkit_errors.UserError, match="not a pre-training record"):
        pipeline.check_pretraining_records([str(ft)], SEQ, PREDS)


def test_dynamic_masking_restores_and_remasks(tmp_path):
    path = _write(str(tmp_path / "d.tfrecord"), range(64))
    originals = np.array([_example(i)[1] + [0] * 4 for i in range(64)])
    batch = next(iter(pipeline.pretraining_dataset(path, SEQ, PREDS, 64, is_training=False)))
    restored = pipeline.DynamicMasker.original_ids(batch).numpy()
    np.testing.assert_array_equal(restored, originals)

    masker = pipeline.DynamicMasker(vocab_size=100, mask_token_id=4, unselectable_token_ids=[0, 2, 3],
                                    max_predictions_per_seq=PREDS, mask_selection_rate=0.3)
    ds = pipeline.pretraining_dataset(path, SEQ, PREDS, 64, is_training=False, dynamic_masker=masker).repeat(2)
    epochs = list(ds)
    for b in epochs:
        pos = b["masked_lm_positions"].numpy()
        w = b["masked_lm_weights"].numpy()
        ids = b["input_ids"].numpy()
        labels = b["masked_lm_ids"].numpy()
        assert b["masked_lm_positions"].dtype == tf.int32 and pos.shape == (64, PREDS)
        assert (w.sum(1) >= 1).all()
        rows = np.arange(64)[:, None].repeat(PREDS, 1)
        valid = w > 0
        # labels are the original tokens; positions never hit [CLS]/[SEP]/padding
        np.testing.assert_array_equal(labels[valid], originals[rows[valid], pos[valid]])
        assert not np.isin(originals[rows[valid], pos[valid]], [0, 2, 3]).any()
        # unmasked positions hold the original ids
        changed = ids != originals
        chosen = np.zeros_like(changed)
        chosen[rows[valid], pos[valid]] = True
        assert not (changed & ~chosen).any()
        frac_mask = (ids[rows[valid], pos[valid]] == 4).mean()
        assert 0.6 < frac_mask < 0.95  # 80% [MASK]
    # new masks each epoch
    assert not np.array_equal(epochs[0]["masked_lm_positions"].numpy(), epochs[1]["masked_lm_positions"].numpy())


def test_finetuning_dataset(tmp_path):
    path = str(tmp_path / "ft.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
        for i in range(5):
            feats = {"input_ids": _int([2] + [5] * (SEQ - 1)), "input_mask": _int([1] * SEQ),
                     "segment_ids": _int([0] * SEQ), "label_ids": _int([i % 2]), "is_real_example": _int([1]),
                     "example_index": _int([i])}
            w.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    batches = list(pipeline.finetuning_dataset(path, SEQ, 2, is_training=False))
    assert [int(x) for b in batches for x in b["example_index"].numpy().ravel()] == [0, 1, 2, 3, 4]
    assert batches[0]["label_ids"].dtype == tf.int32
    with pytest.raises(bertkit_errors.UserError, match="max_seq_length 16, but --max_seq_length=8"):
        pipeline.finetuning_dataset(path, 8, 2)


def test_full_shuffle_buffer_mixes_a_file_sorted_by_label(tmp_path):
    """Task files are often sorted by label: the first batches of an epoch must still hold every label."""
    path = str(tmp_path / "sorted.tfrecord")
    n_per_label, labels = 600, 3
    with tf.io.TFRecordWriter(path) as w:
        for i in range(n_per_label * labels):
            feats = {"input_ids": _int([2] + [5] * (SEQ - 1)), "input_mask": _int([1] * SEQ),
                     "segment_ids": _int([0] * SEQ), "label_ids": _int([i // n_per_label]),
                     "is_real_example": _int([1]), "example_index": _int([i])}
            w.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    n = n_per_label * labels
    assert pipeline.full_shuffle_buffer(n) == n
    assert pipeline.full_shuffle_buffer(10 ** 9) == pipeline.FULL_SHUFFLE_MAX_RECORDS

    def first_labels(buffer):
        d = pipeline.finetuning_dataset(path, SEQ, 32, seed=3, shuffle_buffer_size=buffer)
        return np.concatenate([b["label_ids"].numpy().ravel() for b in d.take(10)])  # 320 of 1800 records

    shares = np.bincount(first_labels(pipeline.full_shuffle_buffer(n)), minlength=labels) / 320
    assert (shares > 0.2).all(), shares
    # the generic default buffer (1,000 records) does not mix them: the first label dominates, the last is rare
    skewed = np.bincount(first_labels(1000), minlength=labels) / 320
    assert skewed[0] > 0.45 and skewed[2] < 0.1, skewed
