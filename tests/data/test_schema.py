"""data.schema / data.tfrecords: feature specs, file patterns, gzip detection, and our hand-made Example bytes vs
TensorFlow."""
import os

import numpy as np
import pytest
import tensorflow as tf

from bertkit_errors import UserError
from data import pretraining_records, schema, tfrecords


def _random_features(rng, b, t=16, p=4, big=False):
    top = (1 << 40) if big else 30522
    return {"input_ids": rng.integers(0, top, (b, t)), "input_mask": rng.integers(0, 2, (b, t)),
            "segment_ids": rng.integers(0, 2, (b, t)), "masked_lm_positions": rng.integers(0, t, (b, p)),
            "masked_lm_ids": rng.integers(0, top, (b, p)),
            "masked_lm_weights": rng.random((b, p)).astype(np.float32),
            "next_sentence_labels": rng.integers(0, 2, (b, 1))}


def _tf_example(f, i):
    feats = {}
    for name, kind in pretraining_records.PRETRAINING_LAYOUT:
        if kind == "float":
            feats[name] = tf.train.Feature(float_list=tf.train.FloatList(value=f[name][i]))
        else:
            feats[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=f[name][i]))
    return tf.train.Example(features=tf.train.Features(feature=feats))


@pytest.mark.parametrize("big", [False, True])
def test_serialized_records_equal_tf_train_example(big):
    rng = np.random.default_rng(1)
    f = _random_features(rng, 50, big=big)
    f["input_ids"][0, :] = 0  # a row of one-byte varints beside multi-byte ones
    f["masked_lm_ids"][1, 0] = 127
    f["masked_lm_ids"][1, 1] = 128
    blob, lengths = pretraining_records.serialize_pretraining(f)
    records = pretraining_records.split_records(blob, np.cumsum(lengths))
    assert len(records) == 50
    for i, rec in enumerate(records):
        parsed = tf.train.Example.FromString(rec)
        assert parsed == _tf_example(f, i)
        # canonical encoding: the same bytes as the protobuf library for this field order
        assert len(rec) == parsed.ByteSize()


def test_parse_with_pretraining_spec_and_gzip_detection(tmp_path):
    rng = np.random.default_rng(2)
    f = _random_features(rng, 7, t=16, p=4)
    blob, lengths = pretraining_records.serialize_pretraining(f)
    records = pretraining_records.split_records(blob, np.cumsum(lengths))
    plain, packed = str(tmp_path / "a.tfrecord"), str(tmp_path / "b.tfrecord")
    with tf.io.TFRecordWriter(plain) as w:
        for r in records[:3]:
            w.write(r)
    with tf.io.TFRecordWriter(packed, "GZIP") as w:
        for r in records[3:]:
            w.write(r)
    (tmp_path / "a.summary.json").write_text("{}")
    (tmp_path / "a.tfrecord.tmp-123").write_bytes(b"partial")  # unfinished: skipped
    assert not schema.is_gzip_file(plain) and schema.is_gzip_file(packed)
    spec = tfrecords.pretraining_feature_spec(16, 4)
    ds = tfrecords.open_tfrecord_dataset(f"{tmp_path}/a*,{tmp_path}/b.tfrecord")
    got = [tf.io.parse_single_example(r, spec) for r in ds]
    assert len(got) == 7
    for i, ex in enumerate(got):
        for name in spec:
            assert ex[name].dtype == spec[name].dtype
            np.testing.assert_array_equal(ex[name].numpy(), f[name][i].reshape(-1))
    # mixed plain + gzip files keep the file order
    ds = tfrecords.open_tfrecord_dataset([packed, plain])
    assert [r.numpy() for r in ds] == records[3:] + records[:3]


def test_feature_specs():
    spec = tfrecords.pretraining_feature_spec(128, 20)
    assert set(spec) == set(schema.PRETRAINING_KEYS)
    assert spec["input_ids"].shape == [128] and spec["masked_lm_positions"].shape == [20]
    assert spec["masked_lm_weights"].dtype == tf.float32 and spec["next_sentence_labels"].shape == [1]
    fine = tfrecords.finetuning_feature_spec(64)
    assert set(fine) == set(schema.FINETUNING_KEYS) and fine["label_ids"].dtype == tf.int64
    assert tfrecords.finetuning_feature_spec(64, is_regression=True)["label_ids"].dtype == tf.float32


def test_file_patterns(tmp_path):
    for name in ("b.txt", "a.txt", "c.json"):
        (tmp_path / name).write_text("x")
    files = schema.expand_file_patterns(f"{tmp_path}/*.txt, {tmp_path}/a.txt,{tmp_path}/*")
    assert [os.path.basename(f) for f in files] == ["a.txt", "b.txt"]
    assert [os.path.basename(f) for f in schema.expand_file_patterns(
        [f"{tmp_path}/*"], skip_non_records=False)] == ["a.txt", "b.txt", "c.json"]
    with pytest.raises(UserError, match=r"--input_file=.*/nothing-\*: no file matches"):
        schema.expand_file_patterns(f"{tmp_path}/a.txt,{tmp_path}/nothing-*")
    with pytest.raises(UserError, match="--train_file: no file given"):
        schema.expand_file_patterns(" , ", flag="train_file")
    with pytest.raises(UserError, match="no file matches"):
        tfrecords.open_tfrecord_dataset(f"{tmp_path}/*.tfrecord")
