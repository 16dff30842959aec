"""Record files read through before training: damaged or shortened files, ids the model's embeddings cannot hold,
and a vocabulary longer than the config's vocab_size are one-line errors naming the file."""
import json
import os

import pytest
import tensorflow as tf

import bertkit_errors
from data import pipeline


def _ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _write(path, n=40, max_id=99, pair=True):
    with tf.io.TFRecordWriter(str(path)) as w:
        for i in range(n):
            seg = [0, 0, 1, 1] if pair else [0, 0, 0, 0]
            feats = {"input_ids": _ints([2, 5 + i % 50, max_id if i == n - 1 else 7, 3]), "segment_ids": _ints(seg),
                     "input_mask": _ints([1, 1, 1, 1]), "label_ids": _ints([i % 2])}
            w.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    return str(path)


def test_scan_counts_and_maxima(tmp_path):
    info = pipeline.scan_records(_write(tmp_path / "a.tf_record", n=40, max_id=123))
    assert info == {"count": 40, "max_input_id": 123, "max_segment_id": 1}


def test_corrupted_record_names_file_and_offset(tmp_path):
    path = _write(tmp_path / "dev.tf_record")
    with open(path, "r+b") as f:  # damage the second record's bytes
        f.seek(os.path.getsize(path) // 2)
        f.write(b"\xff\xff\xff\xff")
    with pytest.raises(bertkit_errors.UserError,
                       match=r"dev.tf_record: damaged TFRecord file \(corrupted record at byte offset \d+, "
                             r"after \d+ readable records\)"):
        pipeline.check_records_integrity([path])


def test_file_cut_mid_record_names_file_and_offset(tmp_path):
    path = _write(tmp_path / "dev.tf_record", n=3)
    first = next(iter(tf.data.TFRecordDataset(path))).numpy()
    with open(path, "r+b") as f:
        f.truncate(16 + len(first) + 20)  # past the second record's header, into its data
    with pytest.raises(bertkit_errors.UserError, match=r"dev.tf_record: damaged TFRecord file \(truncated record at "
                                                       rf"byte offset {16 + len(first)}, after 1 readable records\)"):
        pipeline.check_records_integrity([path])


def test_shortened_file_is_caught_by_the_metadata_count(tmp_path):
    path = _write(tmp_path / "dev.tf_record", n=40)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    meta = str(tmp_path / "task_meta.json")
    with pytest.raises(bertkit_errors.UserError, match=r"dev.tf_record: 20 records, but .*task_meta.json says 40"):
        pipeline.check_records_integrity([path], {path: (40, meta)})


def test_pretraining_summary_counts_round_robin(tmp_path):
    files = [str(tmp_path / f"p-{k}.tfrecord") for k in range(3)]
    with open(tmp_path / "p.summary.json", "w") as f:
        json.dump({"instances": 10, "output_files": files}, f)
    counts = pipeline.summary_record_counts(files)
    assert [counts[p][0] for p in files] == [4, 3, 3]
    assert counts[files[0]][1].endswith("p.summary.json")


def test_ids_beyond_the_config(tmp_path):
    path = _write(tmp_path / "train.tf_record", max_id=8000)
    with pytest.raises(bertkit_errors.UserError,
                       match=r"train.tf_record: records hold token id 8000, but vocab_size is 8000 in cfg.json"):
        pipeline.check_records_integrity([path], vocab_size=8000, type_vocab_size=2, config_file="cfg.json")
    with pytest.raises(bertkit_errors.UserError,
                       match=r"records hold segment id 1 \(sentence pairs\), but type_vocab_size is 1 in cfg.json"):
        pipeline.check_records_integrity([path], vocab_size=9000, type_vocab_size=1, config_file="cfg.json")
    single = _write(tmp_path / "single.tf_record", pair=False)
    assert pipeline.check_records_integrity([single], vocab_size=100, type_vocab_size=1)
    assert not pipeline.check_records_integrity([single], vocab_size=100, max_bytes=10)  # too large: skipped


def test_vocab_longer_than_vocab_size(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(f"t{i}" for i in range(12)) + "\n")
    pipeline.check_vocab_fits(str(vocab), 12, "cfg.json")
    with pytest.raises(bertkit_errors.UserError,
                       match=r"--vocab_file=.*vocab.txt: 12 tokens, more than vocab_size 10 in cfg.json"):
        pipeline.check_vocab_fits(str(vocab), 10, "cfg.json")


def test_damage_found_mid_run_names_the_file(tmp_path):
    good = _write(tmp_path / "a.tf_record")
    bad = _write(tmp_path / "b.tf_record")
    with open(bad, "r+b") as f:
        f.seek(os.path.getsize(bad) // 2)
        f.write(b"\xff\xff\xff\xff")
    with pytest.raises(bertkit_errors.UserError, match=r"b.tf_record: damaged TFRecord file \(corrupted record"):
        with pipeline.damaged_records_named([good, bad]):
            for _ in tf.data.TFRecordDataset([good, bad]):
                pass
