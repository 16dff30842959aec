"""serving/export.py: SavedModels in TF Serving layout, checked in a fresh process against the in-memory models."""
import base64
import functools
import json
import os
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

import bertkit_errors
from modeling import ModelConfig, build_classifier, build_encoder
from serving import export, export_dirs
from serving.model_config import ModelSpecConfig
from training import fastbert

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOCAB = os.path.join(ROOT, "tests", "data_files", "bert_uncased_vocab.txt")
T = 24
LABELS = ["business", "sport", "tech"]
LONG = ("The quick brown fox jumps over the lazy dog. " * 120)[:5000]
TEXTS = ["Shares rose sharply after the results.", "", LONG, "北京欢迎你 😀🎉 naïve café", "héllo\tWORLD ΣΑΣ",
         "The striker scored twice!"]
TEXTS_B = ["A passage about markets.", "only b", "", LONG[:300], "你好", "Ünïcödé ✓"]
SHORT = [t for t in TEXTS if t != LONG]   # a call whose longest text is shorter than T: the export trims columns
SHORT_B = [b for b in TEXTS_B if len(b) < 100]


def tiny_config():
    with open(os.path.join(ROOT, "configs", "tiny_bert.json")) as f:
        d = json.load(f)
    d.update(vocab_size=30522, max_position_embeddings=64)
    return ModelConfig.from_dict(d, source="test")


def scale_weights(layer, factor, seed):
    """Random, larger weights so outputs differ clearly between inputs (random init gives near-uniform logits)."""
    rng = np.random.RandomState(seed)
    for v in layer.weights:
        v.assign(rng.normal(0, factor, v.shape).astype(np.float32))


def _examples(a, b=None):
    out = []
    for i, x in enumerate(a):
        f = {"text_a": tf.train.Feature(bytes_list=tf.train.BytesList(value=[x.encode()]))}
        if b is not None and b[i] is not None:
            f["text_b"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[b[i].encode()]))
        out.append(tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString())
    return out


# A fresh interpreter that imports only tensorflow and tensorflow_text: load each export, run the given calls.
DRIVER = r"""
import base64, json, sys
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401
assert not any(m.split(".")[0] in ("modeling", "serving", "tokenization", "training") for m in sys.modules)
spec = json.load(open(sys.argv[1]))
out, sigs, loaded = {}, {}, {}
for case, (path, signature, inputs) in spec.items():
    if path not in loaded:
        loaded[path] = tf.saved_model.load(path)
        sigs[path] = {n: sorted(f.structured_outputs) for n, f in loaded[path].signatures.items()}
        sigs[path + ":inputs"] = {n: {k: [v.dtype.name, v.shape.as_list()]
                                      for k, v in f.structured_input_signature[1].items()}
                                  for n, f in loaded[path].signatures.items()}
    feed = {}
    for name, (dtype, value) in inputs.items():
        if dtype == "bytes":
            value = [base64.b64decode(v) for v in value]
            dtype = "string"
        feed[name] = tf.constant(value, dtype=dtype)
    for k, v in loaded[path].signatures[signature](**feed).items():
        out[case + "/" + k] = v.numpy()
np.savez(sys.argv[2], **out)
json.dump(sigs, open(sys.argv[3], "w"))
"""


@pytest.fixture(scope="module")
def ex(tmp_path_factory):
    """Exports (built once): single-text classifier, pair FastBERT classifier, regression, mean+L2 encoder; and the
    fresh-process results of the calls on them."""
    tmp = tmp_path_factory.mktemp("export")
    tf.random.set_seed(1)
    config = tiny_config()
    packer = export._packer(VOCAB, True, T)   # the exports' own (cached) packer: building one takes seconds
    r = {"tmp": tmp, "packer": packer}

    clf = build_classifier(config, len(LABELS))
    scale_weights(clf.head, 0.5, 0)
    r["clf"] = clf
    r["clf_dir"] = export.export_classifier(clf, vocab_file=VOCAB, do_lower_case=True, max_seq_length=T,
                                            labels=LABELS, export_base=str(tmp / "clf"),
                                            warmup_texts=["warm up", "ça va 😀"])

    pair = build_classifier(config, len(LABELS))
    scale_weights(pair.head, 0.5, 1)
    branches = fastbert.BranchSet(config.num_hidden_layers, len(LABELS), branch_hidden_size=8, num_heads=2)
    final = fastbert.pooled_head(pair.encoder, pair.head)
    fastbert.run_with_branches(pair.encoder, branches, final, packer((tf.constant(["a"]), tf.constant(["b"]))))
    for i, b in enumerate(branches):
        scale_weights(b.classifier, 0.6, 10 + i)
    r.update(pair=pair, branches=branches, final=final)
    r["pair_dir"] = export.export_classifier(pair, vocab_file=VOCAB, do_lower_case=True, max_seq_length=T,
                                             labels=LABELS, pair=True, export_base=str(tmp / "pair"),
                                             branches=branches)

    reg = build_classifier(config, 1)
    scale_weights(reg.head, 0.5, 2)
    r["reg"] = reg
    r["reg_dir"] = export.export_classifier(reg, vocab_file=VOCAB, do_lower_case=True, max_seq_length=T, labels=[],
                                            is_regression=True, export_base=str(tmp / "models"), warmup_texts=[])

    enc = build_encoder(config)
    r["enc"] = enc
    # Same base folder as the regression model (only to check the version numbering without a further export).
    r["enc_dir"] = export.export_encoder(enc, VOCAB, True, T, str(tmp / "models"), pooling="mean",
                                         l2_normalize=True)

    ids = {k: v.numpy().tolist() for k, v in packer(tf.constant(TEXTS)).items()}
    ids_feed = {k: ["int32", v] for k, v in ids.items()}
    text = {"text_a": ["string", TEXTS]}
    ab = {"text_a": ["string", TEXTS], "text_b": ["string", TEXTS_B]}
    b64 = lambda xs: ["bytes", [base64.b64encode(x).decode() for x in xs]]  # noqa: E731
    b_missing = [b if i != 1 else None for i, b in enumerate(TEXTS_B)]   # example 1 has no text_b feature
    spec = {
        "clf_text": [r["clf_dir"], "serving_default", text],
        "clf_ids": [r["clf_dir"], "serve_ids", ids_feed],
        "clf_examples": [r["clf_dir"], "serve_examples", {"examples": b64(_examples(TEXTS))}],
        "pair_text": [r["pair_dir"], "serving_default", ab],
        "pair_examples": [r["pair_dir"], "serve_examples", {"examples": b64(_examples(TEXTS, b_missing))}],
        "pair_speed0": [r["pair_dir"], "serve_speed", {**ab, "speed": ["float32", 0.0]}],
        "pair_speed1": [r["pair_dir"], "serve_speed", {**ab, "speed": ["float32", 1.01]}],
        "pair_ids_speed0": [r["pair_dir"], "serve_ids_speed", {
            **{k: ["int32", v.numpy().tolist()] for k, v in
               packer((tf.constant(TEXTS), tf.constant(TEXTS_B))).items()}, "speed": ["float32", 0.0]}],
        "reg_text": [r["reg_dir"], "serving_default", text],
        "enc_text": [r["enc_dir"], "serving_default", {"text": ["string", TEXTS]}],
        "enc_encode": [r["enc_dir"], "encode", {"text": ["string", TEXTS]}],
        "enc_ids": [r["enc_dir"], "serve_ids", ids_feed],
        "clf_short": [r["clf_dir"], "serving_default", {"text_a": ["string", SHORT]}],
        "enc_short": [r["enc_dir"], "serving_default", {"text": ["string", SHORT]}],
        "pair_short_speed": [r["pair_dir"], "serve_speed", {
            "text_a": ["string", SHORT], "text_b": ["string", SHORT_B], "speed": ["float32", 0.3]}],
        "enc_short_ids": [r["enc_dir"], "serve_ids", {
            k: ["int32", v.numpy().tolist()] for k, v in packer(tf.constant(SHORT)).items()}],
    }
    spec_path, out_path, sigs_path = tmp / "spec.json", tmp / "out.npz", tmp / "sigs.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ""}
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(spec_path), str(out_path), str(sigs_path)],
                          capture_output=True, text=True, env=env, cwd=str(tmp), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r["out"] = dict(np.load(out_path, allow_pickle=True))
    r["sigs"] = json.loads(sigs_path.read_text())
    return r


def close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-5)


def test_layout_assets_and_signatures(ex):
    d = ex["clf_dir"]
    assert os.path.basename(d) == "1" and os.path.dirname(d) == str(ex["tmp"] / "clf")
    assert os.listdir(ex["tmp"] / "clf") == ["1"]          # nothing temporary left beside the version
    assert os.path.isfile(os.path.join(d, "saved_model.pb"))
    assert sorted(os.listdir(os.path.join(d, "assets"))) == ["bert_uncased_vocab.txt", "labels.txt"]
    with open(os.path.join(d, "assets", "labels.txt"), encoding="utf-8") as f:
        assert f.read().splitlines() == LABELS
    meta = json.load(open(os.path.join(d, "assets.extra", "bertkit_export.json")))
    assert meta["kind"] == "classifier" and meta["labels"] == LABELS and meta["max_seq_length"] == T
    sigs = ex["sigs"]
    assert sigs[d] == {name: ["label", "label_id", "logits", "probabilities"]
                       for name in ("serving_default", "serve_ids", "serve_examples")}
    assert set(sigs[ex["pair_dir"]]) == {"serving_default", "serve_ids", "serve_examples", "serve_speed",
                                         "serve_ids_speed"}
    assert sigs[ex["pair_dir"]]["serve_speed"] == ["exit_layer", "label", "label_id", "probabilities"]
    assert "exit_layer" in sigs[ex["pair_dir"]]["serving_default"]
    assert sigs[ex["reg_dir"]]["serving_default"] == ["logits", "score"]
    assert os.listdir(os.path.join(ex["reg_dir"], "assets")) == ["bert_uncased_vocab.txt"]   # no labels.txt
    assert sigs[ex["enc_dir"]] == {"serving_default": ["input_mask", "pooled_output", "sequence_output"],
                                   "serve_ids": ["pooled_output", "sequence_output"], "encode": ["embeddings"]}


def test_classifier_matches_in_memory_model(ex):
    feats = ex["packer"](tf.constant(TEXTS))
    assert int(tf.reduce_sum(feats["input_mask"][2])) == T            # the 5,000-character text is truncated
    logits = ex["clf"](feats, training=False).numpy()
    probs = tf.nn.softmax(logits).numpy()
    assert np.ptp(probs[:, 0]) > 1e-3                                  # the texts really give different outputs
    out = ex["out"]
    for case in ("clf_text", "clf_ids", "clf_examples"):
        close(out[f"{case}/probabilities"], probs)
        close(out[f"{case}/logits"], logits)
        assert out[f"{case}/probabilities"].dtype == np.float32
        assert out[f"{case}/label_id"].dtype == np.int64
        np.testing.assert_array_equal(out[f"{case}/label_id"], probs.argmax(-1))
        assert [x.decode() for x in out[f"{case}/label"]] == [LABELS[i] for i in probs.argmax(-1)]


def test_short_texts_run_trimmed_with_the_same_outputs(ex):
    """A call whose texts all end before T runs on fewer columns (_trim); its outputs are those of the full-width
    in-memory model, and the encoder's sequence_output keeps width T with zeros after the kept columns."""
    feats = ex["packer"](tf.constant(SHORT))
    lengths = feats["input_mask"].numpy().sum(1)
    keep = int(lengths.max()) + 1
    assert keep < T
    trimmed, width = export._trim(feats)
    assert int(width) == T and all(v.shape[1] == keep for v in trimmed.values())
    close(ex["out"]["clf_short/probabilities"], tf.nn.softmax(ex["clf"](feats, training=False)))
    pair_feats = ex["packer"]((tf.constant(SHORT), tf.constant(SHORT_B)))   # FastBERT early exit, trimmed
    assert int(pair_feats["input_mask"].numpy().sum(1).max()) + 1 < T
    ref_p, ref_e = fastbert.early_exit_predict(ex["pair"].encoder, ex["branches"], ex["final"], pair_feats, 0.3)
    close(ex["out"]["pair_short_speed/probabilities"], ref_p)
    np.testing.assert_array_equal(ex["out"]["pair_short_speed/exit_layer"], ref_e.numpy())
    ref = ex["enc"](feats, training=False)
    for case in ("enc_short", "enc_short_ids"):
        seq = ex["out"][f"{case}/sequence_output"]
        assert seq.shape == (len(SHORT), T, ref["sequence_output"].shape[-1])
        close(ex["out"][f"{case}/pooled_output"], ref["pooled_output"])
        close(seq[:, :keep], ref["sequence_output"][:, :keep])
        assert not seq[:, keep:].any()


def test_trim_keeps_the_last_attended_column_and_one_more():
    mask = tf.constant([[1, 1, 1, 0, 0, 0, 0, 0], [1, 0, 1, 1, 1, 0, 0, 0]])   # a hole in row 2: still attended
    feats = {"input_ids": mask * 7, "input_mask": mask, "segment_ids": tf.zeros_like(mask)}
    trimmed, width = export._trim(feats)
    assert int(width) == 8
    np.testing.assert_array_equal(trimmed["input_mask"], mask[:, :6])
    np.testing.assert_array_equal(trimmed["input_ids"], mask[:, :6] * 7)
    full = tf.ones([2, 5], tf.int32)
    assert export._trim({"input_mask": full})[0]["input_mask"].shape == (2, 5)   # nothing to drop
    assert export._trim({"input_mask": tf.zeros([2, 5], tf.int32)})[0]["input_mask"].shape == (2, 1)
    assert export._trim({"input_mask": tf.zeros([0, 5], tf.int32)})[0]["input_mask"].shape == (0, 1)


@pytest.mark.parametrize("name", ["tiny_mobilebert", "tiny_albert"])
def test_trimmed_export_matches_other_encoders(name, tmp_path):
    """MobileBERT's trigram embedding reads each token's right neighbour, so trimming to the longest text exactly
    would change the last token's output; the kept padding column makes the export match the padded model."""
    with open(os.path.join(ROOT, "configs", f"{name}.json")) as f:
        d = json.load(f)
    d.update(vocab_size=30522, max_position_embeddings=64)
    tf.random.set_seed(3)
    enc = build_encoder(ModelConfig.from_dict(d, source="test"))
    version = export.export_encoder(enc, VOCAB, True, T, str(tmp_path / "m"))
    feats = export._packer(VOCAB, True, T)(tf.constant(SHORT))
    ref = enc(feats, training=False)
    got = tf.saved_model.load(version).signatures["serving_default"](text=tf.constant(SHORT))
    lengths = feats["input_mask"].numpy().sum(1)
    keep = int(lengths.max()) + 1
    close(got["pooled_output"], ref["pooled_output"])
    close(got["sequence_output"][:, :keep - 1], ref["sequence_output"][:, :keep - 1])   # the attended positions
    if name == "tiny_mobilebert":   # without the padding column the longest text's last token would differ
        row, last = int(lengths.argmax()), keep - 2
        cut = enc({k: v[:, :keep - 1] for k, v in feats.items()}, training=False)["sequence_output"]
        assert np.abs(cut[row, last] - ref["sequence_output"][row, last]).max() > 1e-3


def test_pair_classifier_and_fastbert(ex):
    packer, pair = ex["packer"], ex["pair"]
    feats = packer((tf.constant(TEXTS), tf.constant(TEXTS_B)))
    probs = tf.nn.softmax(pair(feats, training=False)).numpy()
    out = ex["out"]
    close(out["pair_text/probabilities"], probs)
    np.testing.assert_array_equal(out["pair_text/exit_layer"], [2] * len(TEXTS))
    # serve_examples: a missing text_b feature is an empty text_b
    b_missing = list(TEXTS_B)
    b_missing[1] = ""
    probs_missing = tf.nn.softmax(pair(packer((tf.constant(TEXTS), tf.constant(b_missing))), training=False))
    close(out["pair_examples/probabilities"], probs_missing)
    # speed 0 is the full model; every example reports the last layer
    for case in ("pair_speed0", "pair_ids_speed0"):
        close(out[f"{case}/probabilities"], probs)
        np.testing.assert_array_equal(out[f"{case}/exit_layer"], [2] * len(TEXTS))
        assert out[f"{case}/exit_layer"].dtype == np.int32
    # speed above 1: every example leaves at the first branch, with that branch's distribution
    ref_p, ref_e = fastbert.early_exit_predict(pair.encoder, ex["branches"], ex["final"], feats, 1.01)
    np.testing.assert_array_equal(ref_e.numpy(), [1] * len(TEXTS))
    np.testing.assert_array_equal(out["pair_speed1/exit_layer"], ref_e.numpy())
    close(out["pair_speed1/probabilities"], ref_p)
    assert np.abs(ref_p.numpy() - probs).max() > 1e-3                 # the branch differs from the full model
    assert [x.decode() for x in out["pair_speed1/label"]] == [LABELS[i] for i in ref_p.numpy().argmax(-1)]


def test_regression_outputs_score(ex):
    logits = ex["reg"](ex["packer"](tf.constant(TEXTS)), training=False).numpy()
    close(ex["out"]["reg_text/score"], logits[:, 0])
    close(ex["out"]["reg_text/logits"], logits)
    assert np.ptp(logits) > 1e-3


def test_encoder_export(ex):
    feats = ex["packer"](tf.constant(TEXTS))
    ref = ex["enc"](feats, training=False)
    out = ex["out"]
    for case in ("enc_text", "enc_ids"):
        close(out[f"{case}/pooled_output"], ref["pooled_output"])
        close(out[f"{case}/sequence_output"], ref["sequence_output"])
    np.testing.assert_array_equal(out["enc_text/input_mask"], feats["input_mask"].numpy())
    mask = feats["input_mask"].numpy()[:, :, None].astype(np.float32)
    mean = (ref["sequence_output"].numpy() * mask).sum(1) / mask.sum(1)
    expected = mean / np.linalg.norm(mean, axis=-1, keepdims=True)
    close(out["enc_encode/embeddings"], expected)
    close(np.linalg.norm(out["enc_encode/embeddings"], axis=-1), np.ones(len(TEXTS)))
    meta = json.load(open(os.path.join(ex["enc_dir"], "assets.extra", "bertkit_export.json")))
    assert meta["kind"] == "encoder" and meta["pooling"] == "mean" and meta["l2_normalize"] is True


# ------------------------------------------------------------------------------------------- warm-up requests
@functools.lru_cache(maxsize=None)
def _prediction_log_class():
    """tensorflow.serving.PredictionLog (the parts warm-up uses), built from a descriptor: an independent decoder
    for the hand-encoded bytes (tensorflow-serving-api is not installed)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from tensorflow.core.framework import tensor_pb2

    pool = descriptor_pool.Default()   # holds tensor.proto (and its dependencies) once tensor_pb2 is imported
    assert tensor_pb2.DESCRIPTOR.name == "tensorflow/core/framework/tensor.proto"
    fdp = descriptor_pb2.FileDescriptorProto(name="test_prediction_log.proto", package="tensorflow.serving",
                                             dependency=["tensorflow/core/framework/tensor.proto"], syntax="proto3")
    F = descriptor_pb2.FieldDescriptorProto
    spec = fdp.message_type.add(name="ModelSpec")
    spec.field.add(name="name", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    spec.field.add(name="signature_name", number=3, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    req = fdp.message_type.add(name="PredictRequest")
    req.field.add(name="model_spec", number=1, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                  type_name=".tensorflow.serving.ModelSpec")
    entry = req.nested_type.add(name="InputsEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                    type_name=".tensorflow.TensorProto")
    req.field.add(name="inputs", number=2, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                  type_name=".tensorflow.serving.PredictRequest.InputsEntry")
    plog = fdp.message_type.add(name="PredictLog")
    plog.field.add(name="request", number=1, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                   type_name=".tensorflow.serving.PredictRequest")
    log = fdp.message_type.add(name="PredictionLog")
    log.field.add(name="predict_log", number=6, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                  type_name=".tensorflow.serving.PredictLog")
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.PredictionLog"))


def _read_warmup(version_dir):
    cls = _prediction_log_class()
    path = os.path.join(version_dir, "assets.extra", export_dirs.WARMUP_FILE)
    logs = []
    for rec in tf.data.TFRecordDataset(path):
        log = cls()
        log.ParseFromString(rec.numpy())
        req = log.predict_log.request
        logs.append((req.model_spec.signature_name, {k: tf.make_ndarray(v) for k, v in req.inputs.items()}))
    return logs


def test_warmup_requests(ex):
    logs = _read_warmup(ex["clf_dir"])
    assert [s for s, _ in logs] == ["serving_default", "serve_ids", "serve_examples"]
    sig, inputs = logs[0]
    assert list(inputs) == ["text_a"]
    assert [x.decode() for x in inputs["text_a"]] == ["warm up", "ça va 😀"]
    assert set(logs[1][1]) == {"input_ids", "input_mask", "segment_ids"} and logs[1][1]["input_ids"].shape == (2, T)
    parsed = tf.io.parse_example(logs[2][1]["examples"], {"text_a": tf.io.FixedLenFeature([], tf.string)})
    assert [x.decode() for x in parsed["text_a"].numpy()] == ["warm up", "ça va 😀"]
    pair_logs = _read_warmup(ex["pair_dir"])
    assert [s for s, _ in pair_logs] == ["serving_default", "serve_ids", "serve_examples", "serve_speed",
                                         "serve_ids_speed"]
    assert set(pair_logs[0][1]) == {"text_a", "text_b"}
    assert pair_logs[3][1]["speed"].shape == () and pair_logs[3][1]["speed"].dtype == np.float32
    # every warm-up request fits its signature: the same input names, dtypes and ranks
    for d in (ex["clf_dir"], ex["pair_dir"], ex["enc_dir"]):
        specs = ex["sigs"][d + ":inputs"]
        for sig, inputs in _read_warmup(d):
            assert set(inputs) == set(specs[sig]), (d, sig)
            for name, value in inputs.items():
                dtype, shape = specs[sig][name]
                assert (value.dtype == object) == (dtype == "string") and value.ndim == len(shape), (sig, name)
                if dtype != "string":
                    assert value.dtype.name == dtype, (sig, name)
    assert [s for s, _ in _read_warmup(ex["enc_dir"])] == ["serving_default", "encode", "serve_ids"]


# ------------------------------------------------------------------------------------------- versions
def test_next_version(tmp_path):
    assert export_dirs.next_version(tmp_path / "missing") == 1
    assert export_dirs.next_version(tmp_path) == 1
    for name in ("1", "3", "10x", ".tmp-export-abc", "tmp"):
        (tmp_path / name).mkdir()
    (tmp_path / "9").write_text("a file, not a version")
    assert export_dirs.next_version(tmp_path) == 4


def test_versions_increase_and_failed_export_leaves_nothing(ex, monkeypatch):
    base = ex["tmp"] / "models"
    assert (ex["reg_dir"], ex["enc_dir"]) == (str(base / "1"), str(base / "2"))
    assert sorted(os.listdir(base)) == ["1", "2"]

    def broken_save(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(tf.saved_model, "save", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        export.export_classifier(ex["reg"], vocab_file=VOCAB, do_lower_case=True, max_seq_length=T, labels=[],
                                 is_regression=True, export_base=str(base))
    assert sorted(os.listdir(base)) == ["1", "2"]


def test_publish_retries_when_a_version_appears(tmp_path, monkeypatch):
    base = tmp_path / "base"
    (base / "1").mkdir(parents=True)
    (base / "1" / "saved_model.pb").write_text("taken")
    staged = base / ".tmp-export-x" / "v"
    staged.mkdir(parents=True)
    (staged / "saved_model.pb").write_text("new")
    answers = iter([1, 2])   # the first pick races with the existing version 1
    monkeypatch.setattr(export_dirs, "next_version", lambda b: next(answers))
    assert export_dirs.publish(str(staged), str(base)) == str(base / "2")
    assert (base / "2" / "saved_model.pb").read_text() == "new"
    assert (base / "1" / "saved_model.pb").read_text() == "taken"


def test_user_errors(ex, tmp_path):
    with pytest.raises(bertkit_errors.UserError, match="labels: 2 label names"):
        export.export_classifier(ex["clf"], vocab_file=VOCAB, do_lower_case=True, max_seq_length=T,
                                 labels=["a", "b"], export_base=str(tmp_path))
    with pytest.raises(bertkit_errors.UserError, match="vocab_file=.*not found"):
        export.export_encoder(ex["enc"], str(tmp_path / "nope.txt"), True, T, str(tmp_path))
    with pytest.raises(bertkit_errors.UserError, match="--pooling=max"):
        export.export_encoder(ex["enc"], VOCAB, True, T, str(tmp_path), pooling="max")
    with pytest.raises(bertkit_errors.UserError, match="max_position_embeddings"):
        export.export_encoder(ex["enc"], VOCAB, True, 65, str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_prediction_log_encoding_matches_protobuf():
    """The hand encoding equals protobuf's own serialization of the same message (built from a descriptor)."""
    cls = _prediction_log_class()
    msg = cls()
    msg.predict_log.request.model_spec.signature_name = "serving_default"
    msg.predict_log.request.inputs["text_a"].CopyFrom(tf.make_tensor_proto(np.array([b"x", b"y\xc3\xa9"],
                                                                                    dtype=object)))
    ours = export_dirs.prediction_log_bytes("serving_default", {"text_a": np.array([b"x", b"y\xc3\xa9"], dtype=object)})
    assert ours == msg.SerializeToString(deterministic=True)


# ------------------------------------------------------------------------------------------- serve.py
def test_server_serves_the_export(ex):
    from serving import server
    handle = server.start_server_thread([ModelSpecConfig(name="bert", base_path=str(ex["tmp"] / "clf"))],
                                        file_system_poll_wait_seconds=0)
    try:
        def post(path, body):
            req = urllib.request.Request(handle.url + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read())

        texts = TEXTS[:4]
        probs = tf.nn.softmax(ex["clf"](ex["packer"](tf.constant(texts)), training=False)).numpy()
        preds = post("/v1/models/bert:predict", {"instances": texts})["predictions"]
        close([p["probabilities"] for p in preds], probs)
        assert [p["label"] for p in preds] == [LABELS[i] for i in probs.argmax(-1)]
        res = post("/v1/models/bert:classify", {"examples": [{"text_a": t} for t in texts]})["results"]
        assert [[c for c, _ in r] for r in res] == [LABELS] * len(texts)
        close([[s for _, s in r] for r in res], probs)
        with urllib.request.urlopen(handle.url + "/v1/models/bert/metadata", timeout=60) as r:
            sigs = json.loads(r.read())["metadata"]["signature_def"]["signature_def"]
        assert sigs["serving_default"]["inputs"]["text_a"]["dtype"] == "DT_STRING"
    finally:
        handle.stop()


def test_id_inputs_of_different_lengths_are_an_error_not_a_silent_truncation(ex):
    """issue 19: serve_ids with a 3-token input_ids and a 2-long input_mask answered for the first 2 tokens."""
    ids = {"input_ids": [[2, 5, 3]], "input_mask": [[1, 1, 1]], "segment_ids": [[0, 0, 0]]}
    calls = [(ex["clf_dir"], "serve_ids", {}), (ex["enc_dir"], "serve_ids", {}),
             (ex["pair_dir"], "serve_ids_speed", {"speed": tf.constant(0.0)})]
    for path, name, extra in calls:
        fn = tf.saved_model.load(path).signatures[name]
        good = {k: tf.constant(v, tf.int32) for k, v in ids.items()}
        fn(**good, **extra)  # equal shapes: runs
        for bad_name, bad in (("input_mask", [[1, 1]]), ("segment_ids", [[0, 0, 0, 0]]), ("input_mask", [[1], [1]])):
            feed = {**good, bad_name: tf.constant(bad, tf.int32)}
            with pytest.raises(tf.errors.InvalidArgumentError, match=f"{bad_name} and input_ids must have the same"):
                fn(**feed, **extra)
        # ids outside the model's tables: a message naming the input and the table, not a gather error
        config = tiny_config()
        for bad_name, bad, match in (
                ("input_ids", [[2, config.vocab_size, 3]], "input_ids: every id must be in \\[0, vocab_size="),
                ("input_ids", [[2, -7, 3]], "input_ids: every id must be in"),
                ("segment_ids", [[0, 2, 0]], "segment_ids: every id must be in \\[0, type_vocab_size=")):
            with pytest.raises(tf.errors.InvalidArgumentError, match=match):
                fn(**{**good, bad_name: tf.constant(bad, tf.int32)}, **extra)
        width = config.max_position_embeddings + 1
        with pytest.raises(tf.errors.InvalidArgumentError, match="at most max_position_embeddings="):
            fn(**{k: tf.zeros([1, width], tf.int32) for k in ids}, **extra)

    import urllib.error

    from serving import server
    handle = server.start_server_thread([ModelSpecConfig(name="bert", base_path=str(ex["tmp"] / "clf"))],
                                        file_system_poll_wait_seconds=0)
    try:
        def post(body):
            req = urllib.request.Request(handle.url + "/v1/models/bert:predict", data=json.dumps(body).encode(),
                                         method="POST", headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        status, doc = post({"signature_name": "serve_ids", "instances": [
            {"input_ids": [2, 5, 3], "input_mask": [1, 1], "segment_ids": [0, 0, 0]}]})
        assert status == 400 and "'input_mask' has shape [1, 2] but 'input_ids' has shape [1, 3]" in doc["error"]
        status, doc = post({"signature_name": "serve_ids", "inputs": {
            "input_ids": [[2, 5, 3]], "input_mask": [[1, 1, 1]], "segment_ids": [[0, 0]]}})
        assert status == 400 and "'segment_ids' has shape [1, 2]" in doc["error"]
        status, doc = post({"signature_name": "serve_ids", "instances": [
            {"input_ids": [2, 5, 3], "input_mask": [1, 1, 1], "segment_ids": [0, 0, 0]}]})
        assert status == 200 and len(doc["predictions"]) == 1
    finally:
        handle.stop()
