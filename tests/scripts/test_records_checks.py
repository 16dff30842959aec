"""run_pretraining.py refuses, before training, records and vocabularies the model config cannot hold and record files
shorter than their .summary.json says: one `error:` line naming the file."""
import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEQ, PREDS = 16, 2


def _ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _records(path, n=8):
    with tf.io.TFRecordWriter(path) as w:
        for i in range(n):
            feats = {"input_ids": _ints([2] + [10 + i] * (SEQ - 2) + [3]), "input_mask": _ints([1] * SEQ),
                     "segment_ids": _ints([0] * (SEQ // 2) + [1] * (SEQ // 2)),
                     "masked_lm_positions": _ints([1, 2]), "masked_lm_ids": _ints([11, 12]),
                     "masked_lm_weights": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0, 1.0])),
                     "next_sentence_labels": _ints([i % 2])}
            w.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())


@pytest.fixture
def setup(tmp_path):
    records = str(tmp_path / "train.tfrecord")
    _records(records)
    with open(tmp_path / "train.summary.json", "w") as f:
        json.dump({"instances": 8, "output_files": [records], "task": "nsp"}, f)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(35)]) + "\n")
    config = json.load(open(os.path.join(ROOT, "configs", "tiny_bert.json")))
    config.update(vocab_size=40, max_position_embeddings=SEQ)
    return {"dir": tmp_path, "records": records, "vocab": str(vocab), "config": config}


def _run(setup, **config_changes):
    config = dict(setup["config"], **config_changes)
    config_file = str(setup["dir"] / "bert_config.json")
    json.dump(config, open(config_file, "w"))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "run_pretraining.py", f"--bert_config_file={config_file}",
           f"--input_file={setup['records']}", f"--vocab_file={setup['vocab']}", f"--output_dir={setup['dir'] / 'o'}",
           f"--max_seq_length={SEQ}", f"--max_predictions_per_seq={PREDS}", "--train_batch_size=2",
           "--num_train_steps=2", "--save_checkpoints_steps=2", "--do_train", "--nodo_export"]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


def _error(r):
    assert r.returncode == 1, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    return last


def test_pair_records_with_type_vocab_size_1(setup):
    last = _error(_run(setup, type_vocab_size=1))
    assert f"{setup['records']}: records hold segment id 1 (sentence pairs), but type_vocab_size is 1" in last


def test_vocab_longer_than_vocab_size(setup):
    last = _error(_run(setup, vocab_size=30))
    assert f"--vocab_file={setup['vocab']}: 40 tokens, more than vocab_size 30" in last


def test_shortened_records(setup):
    size = os.path.getsize(setup["records"])
    with open(setup["records"], "r+b") as f:
        f.truncate(size // 2)
    last = _error(_run(setup))
    assert f"{setup['records']}: 4 records, but " in last and "train.summary.json says 8" in last
