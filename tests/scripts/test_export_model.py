"""export_model.py: a bertkit model directory -> TF Serving export (one subprocess), checkpoint loading in-process."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the ops the exports use, before tf.saved_model.load)

import bertkit_errors
from modeling import ModelConfig, build_classifier, build_encoder
from serving import checkpoint_export, export
from training import fastbert

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOCAB = os.path.join(ROOT, "tests", "data_files", "bert_uncased_vocab.txt")
LABELS = ["entailment", "neutral", "contradiction"]
A = ["A man plays the guitar.", "", "日本語のテキスト 😀"]
B = ["Someone makes music.", "nothing", "x" * 3000]


def tiny_config():
    with open(os.path.join(ROOT, "configs", "tiny_bert.json")) as f:
        d = json.load(f)
    d.update(vocab_size=30522, max_position_embeddings=64)
    return ModelConfig.from_dict(d, source="test")


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """clf/: a FastBERT pair classifier as run_classifier.py leaves it (ckpt + bert_config.json, vocab.txt,
    bertkit.json, task_meta.json); enc/: an encoder-only checkpoint with its files."""
    tmp = tmp_path_factory.mktemp("export_model")
    tf.random.set_seed(3)
    config = tiny_config()
    clf = build_classifier(config, len(LABELS))
    rng = np.random.RandomState(0)
    for v in clf.head.weights:
        v.assign(rng.normal(0, 0.5, v.shape).astype(np.float32))
    branches = fastbert.BranchSet(config.num_hidden_layers, len(LABELS), branch_hidden_size=16, num_heads=4)
    final = fastbert.pooled_head(clf.encoder, clf.head)
    ones = tf.ones([1, 2], tf.int32)
    fastbert.run_with_branches(clf.encoder, branches, final, {"input_ids": ones, "input_mask": ones,
                                                              "segment_ids": ones * 0})
    for v in branches.weights:
        v.assign(rng.normal(0, 0.3, v.shape).astype(np.float32))
    d = tmp / "clf"
    d.mkdir()
    tf.train.Checkpoint(encoder=clf.encoder, classifier_head=clf.head, branches=branches).save(str(d / "ckpt"))
    config.to_json_file(str(d / "bert_config.json"))
    shutil.copy(VOCAB, d / "vocab.txt")
    (d / "bertkit.json").write_text(json.dumps({"do_lower_case": True}))
    (d / "task_meta.json").write_text(json.dumps({"task": "mnli", "labels": LABELS, "num_labels": 3,
                                                  "is_regression": False, "max_seq_length": 20}))
    enc = build_encoder(config)
    e = tmp / "enc"
    e.mkdir()
    tf.train.Checkpoint(encoder=enc).save(str(e / "ckpt"))
    config.to_json_file(str(e / "bert_config.json"))
    return {"tmp": tmp, "clf": clf, "branches": branches, "final": final, "clf_dir": d, "enc": enc, "enc_dir": e}


def test_export_model_script_exports_the_classifier(model_dirs):
    d = model_dirs["clf_dir"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "export_model.py"), f"--init_checkpoint={d}"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    version_dir = str(d / "export" / "1")
    assert f"exported {version_dir}" in proc.stdout
    meta = json.load(open(os.path.join(version_dir, "assets.extra", "bertkit_export.json")))
    assert meta["pair"] is True and meta["fastbert"] is True and meta["max_seq_length"] == 20   # from task_meta
    loaded = tf.saved_model.load(version_dir)
    a, b = tf.constant(A), tf.constant(B)
    packer = export._packer(VOCAB, True, 20)
    feats = packer((a, b))
    probs = tf.nn.softmax(model_dirs["clf"](feats, training=False)).numpy()
    out = loaded.signatures["serving_default"](text_a=a, text_b=b)
    np.testing.assert_allclose(out["probabilities"].numpy(), probs, atol=1e-5)
    assert [x.decode() for x in out["label"].numpy()] == [LABELS[i] for i in probs.argmax(-1)]
    # the branches were restored from the checkpoint: speed > 1 gives the first branch's distribution
    ref_p, ref_e = fastbert.early_exit_predict(model_dirs["clf"].encoder, model_dirs["branches"],
                                               model_dirs["final"], feats, 1.01)
    out = loaded.signatures["serve_speed"](text_a=a, text_b=b, speed=tf.constant(1.01))
    np.testing.assert_allclose(out["probabilities"].numpy(), ref_p.numpy(), atol=1e-5)
    np.testing.assert_array_equal(out["exit_layer"].numpy(), ref_e.numpy())


def test_encoder_export_from_checkpoint_prefix(model_dirs):
    e = model_dirs["enc_dir"]
    out_dir = model_dirs["tmp"] / "enc_export"
    version_dir = checkpoint_export.export_checkpoint(str(e / "ckpt-1"), export_dir=str(out_dir), vocab_file=VOCAB,
                                           max_seq_length=16)
    assert version_dir == str(out_dir / "1")
    loaded = tf.saved_model.load(version_dir)
    texts = tf.constant(A)
    ref = model_dirs["enc"](export._packer(VOCAB, True, 16)(texts), training=False)
    got = loaded.signatures["encode"](text=texts)["embeddings"].numpy()     # pooling="cls": the [CLS] vector
    np.testing.assert_allclose(got, ref["sequence_output"].numpy()[:, 0], atol=1e-5)


def test_checkpoint_errors(model_dirs, tmp_path):
    d, e = model_dirs["clf_dir"], model_dirs["enc_dir"]
    with pytest.raises(bertkit_errors.UserError, match="no such checkpoint"):
        checkpoint_export.export_checkpoint(str(tmp_path / "missing"))
    with pytest.raises(bertkit_errors.UserError, match="vocab_file: not given"):
        checkpoint_export.export_checkpoint(str(e), export_dir=str(tmp_path / "x"))
    with pytest.raises(bertkit_errors.UserError, match="no classifier_head"):
        checkpoint_export.export_checkpoint(str(e), vocab_file=VOCAB, task_meta=str(d / "task_meta.json"),
                                 export_dir=str(tmp_path / "x"))
    bad_meta = tmp_path / "meta.json"
    bad_meta.write_text(json.dumps({"labels": ["a", "b"], "is_regression": False}))
    with pytest.raises(bertkit_errors.UserError, match="2 label.*3 outputs"):
        checkpoint_export.export_checkpoint(str(d), task_meta=str(bad_meta), export_dir=str(tmp_path / "x"))
    other = dict(json.load(open(d / "bert_config.json")), hidden_size=32, intermediate_size=64)
    (tmp_path / "cfg.json").write_text(json.dumps(other))
    with pytest.raises(bertkit_errors.UserError, match="does not match the model config"):
        checkpoint_export.export_checkpoint(str(e), bert_config_file=str(tmp_path / "cfg.json"), vocab_file=VOCAB,
                                 export_dir=str(tmp_path / "x"))
    assert not (tmp_path / "x").exists() or os.listdir(tmp_path / "x") == []
