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


def test_task_records_added_by_a_failing_call_are_removed(tmp_path, monkeypatch):
    """The train split written, the dev split's disk full: no train.tf_record left without its task_meta.json."""
    from data import processors
    from tokenization import FullTokenizer

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    calls = []
    real = finetuning.write_tfrecord

    def write_then_fill(features, path):
        calls.append(path)
        if len(calls) > 1:
            raise UserError(f"{path}: no space left on device while writing records")
        return real(features, path)

    monkeypatch.setattr(finetuning, "write_tfrecord", write_then_fill)
    out = tmp_path / "out"
    with pytest.raises(UserError, match="no space left"):
        finetuning.write_task_records(processors.get_processor("rte"), os.path.join(root, "tests/fixtures/glue/RTE"),
                                      FullTokenizer(os.path.join(root, "tests/data_files/bert_uncased_vocab.txt")),
                                      str(out), 32, splits="train,dev")
    assert len(calls) == 2 and os.listdir(out) == []


def test_converted_checkpoint_on_a_full_disk(tmp_path, monkeypatch):
    from modeling import ModelConfig, build_encoder, checkpoints

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    config = ModelConfig.from_json_file(os.path.join(root, "configs", "tiny_bert.json"))
    encoder = build_encoder(config)

    def full(self, prefix, *args, **kwargs):
        os.makedirs(prefix + "_temp")
        open(prefix + ".index", "wb").close()
        raise tf.errors.ResourceExhaustedError(None, None, f"{prefix}_temp/part-0; No space left on device")

    monkeypatch.setattr(tf.train.Checkpoint, "write", full)
    out = tmp_path / "converted"
    with pytest.raises(UserError, match=r"converted: no space left on device while writing checkpoint ckpt-0"):
        checkpoints.save_bertkit_checkpoint(str(out), config, encoder)
    assert os.listdir(out) == []  # no checkpoint files, and no side files written before it
