"""create_pretraining_data.py end to end (subprocess): records parse with data.schema, byte-identical output whatever
--num_workers, shards / gzip, atomic output, and one-line errors (exit 1) for bad input."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.data import test_pretraining_helpers as H

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "create_pretraining_data.py")


def _run(args, timeout=240):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, SCRIPT, "--noprogress"] + args, capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pretrain")
    return {"dir": d, "vocab": H.write_tiny_vocab(d / "vocab.txt"),
            "corpus": H.write_text_corpus(d / "corpus.txt", num_docs=60)}


def _common(files, out, *extra):
    return [f"--input_file={files['corpus']}", f"--output_file={out}", f"--vocab_file={files['vocab']}",
            "--max_seq_length=32", "--max_predictions_per_seq=5", "--dupe_factor=2", "--docs_per_chunk=16",
            *extra]


def test_output_is_identical_whatever_num_workers_and_parses(files):
    d = files["dir"]
    runs = {}
    for workers in (1, 2):
        out = d / f"w{workers}" / "data.tfrecord"
        r = _run(_common(files, out, f"--num_workers={workers}", "--num_output_shards=2", "--gzip_compress"))
        assert r.returncode == 0, r.stderr
        shards = sorted(glob.glob(str(d / f"w{workers}" / "data-*-of-00002.tfrecord")))
        assert [os.path.basename(s) for s in shards] == ["data-00000-of-00002.tfrecord",
                                                        "data-00001-of-00002.tfrecord"]
        runs[workers] = [open(s, "rb").read() for s in shards]
        assert not glob.glob(str(d / f"w{workers}" / "*.tmp-*"))
    assert runs[1] == runs[2]
    assert runs[1][0][:2] == b"\x1f\x8b"  # gzip

    import tensorflow as tf

    from data import tfrecords

    summary = json.load(open(d / "w2" / "data.summary.json"))
    spec = tfrecords.pretraining_feature_spec(32, 5)
    records = list(tfrecords.open_tfrecord_dataset(str(d / "w2" / "data-*.tfrecord")))
    assert len(records) == summary["instances"] > 50
    parsed = tf.io.parse_example(tf.stack(records), spec)
    ids = H.restore_tokens({k: v.numpy() for k, v in parsed.items()})  # a random replacement may be [SEP]
    assert (ids[:, 0] == 2).all()  # [CLS] of the tiny vocab
    assert ((ids == 3).sum(axis=1) == 2).all()  # two [SEP]
    assert parsed["next_sentence_labels"].shape == (len(records), 1)
    w = parsed["masked_lm_weights"].numpy()
    assert summary["masked_lm_predictions"] == int(w.sum())
    assert 0.1 < summary["masked_fraction"] < 0.2 and 0.3 < summary["label_1_fraction"] < 0.7
    assert summary["flags"]["num_output_shards"] == 2 and summary["task"] == "nsp"


@pytest.mark.skipif(not __import__("data.pretraining_records").pretraining_records.HAVE_FAST_CRC32C,
                    reason="google-crc32c not installed: the TFRecordWriter path is the only one")
def test_worker_framing_equals_tfrecordwriter_and_sop_ngram_records_parse(tmp_path):
    """Records framed by the workers (google-crc32c) are byte-identical to tf.io.TFRecordWriter's; SOP + n-gram
    whole-word data parses with the pretraining spec."""
    import tensorflow as tf

    from data import pretraining, pretraining_writer, tfrecords

    corpus = H.write_text_corpus(tmp_path / "c.txt", num_docs=30)
    vocab = H.tiny_vocab()
    cfg = pretraining.InstanceConfig(max_seq_length=32, max_predictions_per_seq=6, dupe_factor=2,
                                     sentence_order_prediction=True, max_ngram_size=3, do_whole_word_mask=True,
                                     **pretraining.vocab_info(vocab))

    def encode(texts):
        return [np.asarray([vocab[w] for w in t.split()], np.int32) for t in texts]

    outs = {}
    for framed in (True, False):
        out = [str(tmp_path / f"f{int(framed)}-a.tfrecord"), str(tmp_path / f"f{int(framed)}-b.tfrecord")]
        summary = pretraining_writer.run([corpus], out, encode, cfg, docs_per_chunk=7, progress=False,
                                         framed=framed)
        outs[framed] = [open(o, "rb").read() for o in out]
    assert outs[True] == outs[False]
    assert summary["task"] == "sop" and 0.35 < summary["label_1_fraction"] < 0.65
    ds = tfrecords.parse_pretraining_dataset(str(tmp_path / "f1-*.tfrecord"), 32, 6)
    n = sum(1 for _ in ds)
    assert n == summary["instances"] > 20
    first = next(iter(ds))
    assert first["input_ids"].dtype == tf.int64 and first["masked_lm_weights"].dtype == tf.float32


def test_failure_mid_run_leaves_no_output(tmp_path):
    """A run that fails after writing part of its output leaves neither the file nor its temporary."""
    from bertkit_errors import UserError
    from data import pretraining, pretraining_writer

    corpus = H.write_text_corpus(tmp_path / "c.txt", num_docs=40)
    vocab = H.tiny_vocab()
    cfg = pretraining.InstanceConfig(max_seq_length=32, max_predictions_per_seq=5, dupe_factor=1,
                                     **pretraining.vocab_info(vocab))
    calls = []

    def encode(texts):
        calls.append(1)
        if len(calls) == 3:
            raise UserError("simulated failure")
        return [np.asarray([vocab[w] for w in t.split()], np.int32) for t in texts]

    out = str(tmp_path / "out.tfrecord")
    with pytest.raises(UserError, match="simulated"):
        pretraining_writer.run([corpus], [out], encode, cfg, docs_per_chunk=10, progress=False,
                               summary_file=str(tmp_path / "out.summary.json"))
    assert os.listdir(tmp_path) == ["c.txt"]


def test_sigterm_mid_run_leaves_no_finished_looking_file(files, tmp_path):
    corpus = H.write_text_corpus(tmp_path / "big.txt", num_docs=1500, max_sentences=12)
    out = tmp_path / "killed.tfrecord"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, SCRIPT, f"--input_file={corpus}", f"--output_file={out}",
                             f"--vocab_file={files['vocab']}", "--dupe_factor=40", "--docs_per_chunk=20",
                             "--num_workers=1", "--noprogress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    deadline = time.time() + 120
    while time.time() < deadline and not glob.glob(str(out) + ".tmp-*") and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be interrupted: make the corpus bigger"
    assert glob.glob(str(out) + ".tmp-*"), "no temporary output appeared"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert sorted(os.listdir(tmp_path)) == ["big.txt"]


# ---- bad input: exit status 1 and one line naming the file / flag -------------------------------------------------
def _error_line(r):
    assert r.returncode == 1, (r.returncode, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and r.stderr.rstrip().endswith(lines[0]), r.stderr
    return lines[0]


def test_missing_vocab(files, tmp_path):
    line = _error_line(_run(_common(dict(files, vocab=str(tmp_path / "nope.txt")), tmp_path / "o.tfrecord")))
    assert "--vocab_file=" in line and "nope.txt" in line and "not found" in line


def test_vocab_without_special_tokens(files, tmp_path):
    vocab = tmp_path / "v.txt"
    vocab.write_text("[PAD]\n[UNK]\nhello\n")
    line = _error_line(_run(_common(dict(files, vocab=str(vocab)), tmp_path / "o.tfrecord")))
    assert "v.txt" in line and "[CLS]" in line and "[MASK]" in line


def test_non_utf8_input_names_file_and_line(files, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"w1 w2 w3\nw4 w5\n\nw6 \xff w7\n")
    line = _error_line(_run(_common(dict(files, corpus=str(bad)), tmp_path / "o.tfrecord")))
    assert f"{bad}:4:" in line and "UTF-8" in line
    assert os.listdir(tmp_path) == ["bad.txt"]


def test_empty_corpus(files, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n  \n")
    line = _error_line(_run(_common(dict(files, corpus=str(empty)), tmp_path / "o.tfrecord")))
    assert "--input_file=" in line and "empty.txt" in line and "empty" in line
    assert os.listdir(tmp_path) == ["empty.txt"]


def test_no_input_file_matches(files, tmp_path):
    line = _error_line(_run(_common(dict(files, corpus=f"{files['corpus']},{tmp_path}/none-*.txt"),
                                    tmp_path / "o.tfrecord")))
    assert "--input_file=" in line and "none-*.txt" in line and "no file matches" in line


@pytest.mark.parametrize("flag,value", [("max_seq_length", 4), ("max_seq_length", 513),
                                        ("max_predictions_per_seq", 33), ("max_predictions_per_seq", 0),
                                        ("masked_lm_prob", 0.0), ("dupe_factor", 0)])
def test_out_of_range_flags(files, tmp_path, flag, value):
    line = _error_line(_run(_common(files, tmp_path / "o.tfrecord", f"--{flag}={value}")))
    assert f"--{flag}={value}" in line
