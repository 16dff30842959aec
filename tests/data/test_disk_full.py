"""Record writers on a full disk (ENOSPC simulated): one UserError naming the file and "no space left", no
temporary file left behind; temporaries of killed runs into the same file are removed by the next run."""
import errno
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bertkit_errors import UserError
from data import finetuning, pretraining, pretraining_writer
from tests.data import test_pretraining_helpers as H


def _features(n=4, seq=8):
    return {"input_ids": np.ones((n, seq), np.int64), "input_mask": np.ones((n, seq), np.int64),
            "segment_ids": np.zeros((n, seq), np.int64), "label_ids": np.zeros(n, np.int64),
            "is_real_example": np.ones(n, np.int64), "example_index": np.arange(n)}


class _FullDiskWriter:
    def __init__(self, path, *args):
        open(path, "wb").close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def write(self, record):
        raise tf.errors.ResourceExhaustedError(None, None, "/x/train.tf_record.tmp-1; No space left on device")


def test_finetuning_records_on_a_full_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(tf.io, "TFRecordWriter", _FullDiskWriter)
    path = str(tmp_path / "train.tf_record")
    with pytest.raises(UserError, match=r"train.tf_record: no space left on device while writing records"):
        finetuning.write_tfrecord(_features(), path)
    assert os.listdir(tmp_path) == []


def test_pretraining_records_on_a_full_disk(tmp_path, monkeypatch):
    def full(self, k, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pretraining_writer._Outputs, "_write_bytes", full)
    corpus = H.write_text_corpus(tmp_path / "c.txt", num_docs=20)
    vocab = H.tiny_vocab()
    cfg = pretraining.InstanceConfig(max_seq_length=32, max_predictions_per_seq=5, dupe_factor=1,
                                     **pretraining.vocab_info(vocab))

    def encode(texts):
        return [np.asarray([vocab[w] for w in t.split()], np.int32) for t in texts]

    out = str(tmp_path / "out.tfrecord")
    with pytest.raises(UserError, match=r"out.tfrecord: no space left on device while writing records"):
        pretraining_writer.run([corpus], [out], encode, cfg, docs_per_chunk=10, progress=False, framed=True,
                               summary_file=str(tmp_path / "out.summary.json"))
    assert os.listdir(tmp_path) == ["c.txt"]


def test_stale_temporaries_of_killed_runs_are_removed(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    path = tmp_path / "train.tf_record"
    stale = tmp_path / f"train.tf_record.tmp-{proc.pid}"
    stale.write_bytes(b"partial")
    assert finetuning.write_tfrecord(_features(), str(path)) == 4
    assert sorted(os.listdir(tmp_path)) == ["train.tf_record"]
