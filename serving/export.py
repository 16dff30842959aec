"""SavedModel export in TensorFlow Serving's layout: `export_base/<version>/` with raw-text signatures.

    from serving import export
    export.export_classifier(classifier, vocab_file=..., do_lower_case=True, max_seq_length=128, labels=[...],
                             is_regression=False, pair=False, export_base="export", branches=None,
                             warmup_texts=None) -> version_dir
    export.export_encoder(encoder, vocab_file, do_lower_case, max_seq_length, export_base, pooling="cls",
                          l2_normalize=False) -> version_dir
    export.next_version(export_base) -> int

A version is written into a hidden temporary folder beside the versions (`export_base/.tmp-export-...`) and renamed
to its number when complete, so TF Serving and serve.py never see a half-written export. Tokenization and packing
run in the graph (tokenization.layers.BertTextPacker); the vocabulary and, for classifiers, `labels.txt` (one label
per line, in label-id order) are SavedModel assets (`assets/`). `assets.extra/tf_serving_warmup_requests` holds
TF Serving warm-up requests (PredictionLog protos, one per signature), `assets.extra/bertkit_export.json` describes
the export (kind, labels, max_seq_length, ...).

Classifier signatures (B = batch, C = classes, T = max_seq_length):
    serving_default  text_a [and text_b]: string [B]
    serve_ids        input_ids, input_mask, segment_ids: int32 [B, T'] (any T' <= max_position_embeddings)
    serve_examples   examples: serialized tf.Example string [B], bytes features text_a [and text_b, default ""]
  -> logits float32 [B, C], probabilities float32 [B, C], label_id int64 [B], label string [B];
     regression (one label): logits [B, 1] and score float32 [B] instead.
FastBERT (branches given; classification only): the three signatures above run the full model and also return
exit_layer int32 [B] (= the number of layers); `serve_speed` (text_a [, text_b], speed: float32 scalar) and
`serve_ids_speed` (input_ids, input_mask, segment_ids, speed) run early exit (training.fastbert.make_early_exit_fn):
an example leaves after the first layer whose branch has normalized entropy < speed; speed 0.0 is the full model.
They return probabilities, label_id, label, exit_layer (1-based layer each example left at); no logits (early exit
computes distributions only). speed has no batch dimension, so call them in the columnar format:
`{"signature_name": "serve_speed", "inputs": {"text_a": [...], "speed": 0.5}}`. (TF Serving signatures have no
optional inputs, hence a separate signature rather than an optional input of serving_default.)

Encoder signatures:
    serving_default  text: string [B] -> pooled_output [B, H], sequence_output [B, T, H] float32, input_mask [B, T]
    serve_ids        input_ids, input_mask, segment_ids -> pooled_output, sequence_output [B, T', H]
    encode           text: string [B] -> embeddings float32 [B, H]: one vector per text, the [CLS] hidden state
                     (pooling="cls") or the mean of the hidden states over the input mask (pooling="mean"),
                     L2-normalised when l2_normalize (like bert-as-service).

Every signature runs the model on the longest text of the call (plus one padding column), not on max_seq_length:
columns that no row attends to are dropped before the encoder (`_trim`). Outputs are unchanged, and a call on short
texts costs what their length costs. The encoder's sequence_output keeps its width T (T'); positions after the
call's longest text are zeros (read it with input_mask).
"""
import contextlib
import json
import os
import re
import shutil
import tempfile

import numpy as np
import tensorflow as tf

import bertkit_errors
import bertkit_io
from modeling import checkpoints

WARMUP_FILE = "tf_serving_warmup_requests"
METADATA_FILE = "bertkit_export.json"
LABELS_FILE = "labels.txt"
DEFAULT_WARMUP_TEXTS = ("The market rallied after strong results.", "",
                        "A longer sentence about sport, politics and technology, with punctuation!")
POOLINGS = ("cls", "mean")

_VERSION_RE = re.compile(r"[0-9]+")


# ---------------------------------------------------------------------------------------------------- versions
def next_version(export_base):
    """1 + the highest numeric folder name in export_base (1 when there is none or export_base does not exist)."""
    export_base = os.fspath(export_base)
    if not os.path.isdir(export_base):
        return 1
    versions = [int(n) for n in os.listdir(export_base)
                if _VERSION_RE.fullmatch(n) and os.path.isdir(os.path.join(export_base, n))]
    return max(versions, default=0) + 1


def _publish(tmp_dir, export_base):
    """Rename the finished tmp_dir to the next version number (retrying if another export took it)."""
    for _ in range(100):
        version = next_version(export_base)
        final = os.path.join(export_base, str(version))
        try:
            os.rename(tmp_dir, final)  # fails if `final` appeared meanwhile (non-empty dir) -> next number
            return final
        except OSError:
            if not os.path.exists(final):
                raise
    raise RuntimeError(f"{export_base}: could not find a free version number")  # pragma: no cover


@contextlib.contextmanager
def _staging_dir(export_base):
    """A temporary folder beside the versions, removed unless published."""
    export_base = os.fspath(export_base)
    try:
        os.makedirs(export_base, exist_ok=True)
    except OSError as e:
        raise bertkit_errors.UserError(f"--export_dir={export_base}: cannot create directory ({e.strerror})") from None
    bertkit_io.remove_stale_temps(export_base, "export")  # staging folders of killed exports
    tmp = tempfile.mkdtemp(prefix=f".tmp-export-{os.getpid()}-", dir=export_base)
    try:
        yield tmp
    except BaseException as e:
        if bertkit_io.is_no_space(e):
            raise bertkit_errors.UserError(f"--export_dir={export_base}: no space left on device") from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------- warm-up file
def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_field(number, payload):
    """A length-delimited protobuf field (wire type 2)."""
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def prediction_log_bytes(signature_name, inputs):
    """A serialized tensorflow.serving.PredictionLog{predict_log{request{model_spec{signature_name}, inputs}}},
    encoded by hand (tensorflow-serving-api is not a dependency). `inputs`: {name: array-like}.

    Field numbers (tensorflow_serving/apis): PredictionLog.predict_log = 6; PredictLog.request = 1;
    PredictRequest.model_spec = 1, .inputs = 2 (map<string, TensorProto>: entry key = 1, value = 2);
    ModelSpec.signature_name = 3."""
    request = _len_field(1, _len_field(3, signature_name.encode("utf-8")))
    for name in sorted(inputs):
        tensor = tf.make_tensor_proto(inputs[name]).SerializeToString()
        request += _len_field(2, _len_field(1, name.encode("utf-8")) + _len_field(2, tensor))
    return _len_field(6, _len_field(1, request))


def _write_warmup(version_dir, requests):
    extra = os.path.join(version_dir, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(extra, WARMUP_FILE)) as w:
        for signature_name, inputs in requests:
            w.write(prediction_log_bytes(signature_name, inputs))


def _write_metadata(version_dir, meta):
    extra = os.path.join(version_dir, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    with open(os.path.join(extra, METADATA_FILE), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2, ensure_ascii=False)
        f.write("\n")


def _text_array(texts):
    return np.array([t.encode("utf-8") if isinstance(t, str) else bytes(t) for t in texts], dtype=object)


def _serialized_examples(texts_a, texts_b=None):
    out = []
    for i, a in enumerate(texts_a):
        feats = {"text_a": tf.train.Feature(bytes_list=tf.train.BytesList(value=[_text_array([a])[0]]))}
        if texts_b is not None:
            feats["text_b"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[_text_array([texts_b[i]])[0]]))
        out.append(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    return np.array(out, dtype=object)


# ---------------------------------------------------------------------------------------------------- helpers
_PACKERS = {}


def _packer(vocab_file, do_lower_case, max_seq_length):
    """A BertTextPacker, reused across exports of the same vocabulary file (building one takes seconds)."""
    from tokenization.layers import BertTextPacker
    vocab_file = os.path.abspath(os.fspath(vocab_file))
    if not os.path.isfile(vocab_file):
        raise bertkit_errors.UserError(f"--vocab_file={vocab_file}: file not found")
    st = os.stat(vocab_file)
    key = (vocab_file, st.st_mtime_ns, st.st_size, bool(do_lower_case), int(max_seq_length))
    if key not in _PACKERS:
        _PACKERS.clear()
        _PACKERS[key] = BertTextPacker(vocab_file, do_lower_case=do_lower_case, max_seq_length=max_seq_length)
    return _PACKERS[key]


class _Packing:
    """tf.functions around the packer, each traced once and called from every signature that packs text (tracing
    the tokenizer graph is the slow part of an export). A plain object, so that tf.saved_model.save does not save
    (or trace) them as functions of the module."""

    def __init__(self, packer):
        self.one = tf.function(lambda text: packer(text), input_signature=[TEXT])
        self.two = tf.function(lambda text_a, text_b: packer((text_a, text_b)), input_signature=[TEXT, TEXT])


def _on_ids(fn, *extra):
    """tf.function(features dict of int32 [None, None] ids, *extra) -> fn(features, *extra), traced once."""
    return tf.function(fn, input_signature=[{s.name: s for s in IDS_SIGNATURE}, *extra])


def _check_seq_length(encoder, max_seq_length):
    limit = getattr(getattr(encoder, "config", None), "max_position_embeddings", None)
    if limit is not None and int(max_seq_length) > int(limit):
        raise bertkit_errors.UserError(
            f"--max_seq_length={max_seq_length}: larger than the model's max_position_embeddings ({limit})")


IDS_SIGNATURE = [tf.TensorSpec([None, None], tf.int32, name="input_ids"),
                 tf.TensorSpec([None, None], tf.int32, name="input_mask"),
                 tf.TensorSpec([None, None], tf.int32, name="segment_ids")]
TEXT = tf.TensorSpec([None], tf.string)
SPEED = tf.TensorSpec([], tf.float32, name="speed")
_ID_KEYS = ("input_ids", "input_mask", "segment_ids")


def _ids(input_ids, input_mask, segment_ids, config):
    """The id signatures' features; input_mask and segment_ids of another shape than input_ids are an
    InvalidArgumentError naming them (the trimming to the mask's width would otherwise drop tokens silently), and so
    are ids outside the model's tables: input_ids not in [0, vocab_size), segment_ids not in [0, type_vocab_size),
    more positions than max_position_embeddings (`config`, the encoder's ModelConfig)."""
    checks = [tf.debugging.assert_equal(
        tf.shape(t), tf.shape(input_ids),
        message=f"{name} and input_ids must have the same shape [batch, length] (one {name} value per token); "
                f"shape of {name} (x) vs input_ids (y):") for name, t in (("input_mask", input_mask),
                                                                         ("segment_ids", segment_ids))]
    for name, t, size, table in (("input_ids", input_ids, config.vocab_size, "vocab_size"),
                                 ("segment_ids", segment_ids, config.type_vocab_size, "type_vocab_size")):
        message = f"{name}: every id must be in [0, {table}={size}) of the model; out of range:"
        checks += [tf.debugging.assert_non_negative(t, message=message),
                   tf.debugging.assert_less(t, tf.constant(size, t.dtype), message=message)]
    checks.append(tf.debugging.assert_less_equal(
        tf.shape(input_ids)[1], config.max_position_embeddings,
        message=f"input_ids: a length of at most max_position_embeddings={config.max_position_embeddings} tokens; "
                "got (x):"))
    with tf.control_dependencies(checks):
        return {"input_ids": tf.identity(input_ids), "input_mask": tf.identity(input_mask),
                "segment_ids": tf.identity(segment_ids)}


def _trim(features):
    """Drop the trailing columns that no row attends to, but one, so that a call costs the length of its longest
    text rather than max_seq_length (a batch-1 call on a 20-token text runs 21 positions, not 128).

    Exact: the dropped positions are masked out of attention, so every attended position's output is unchanged. One
    padding column is kept because MobileBERT's trigram embedding reads each token's right neighbour: the last real
    token must still see a [PAD] embedding, as in the padded call (its outputs differ slightly otherwise). Returns
    the trimmed features and the original width."""
    mask = features["input_mask"]
    width = tf.shape(mask)[1]
    attended = tf.reduce_any(tf.not_equal(mask, 0), axis=0)
    last = tf.reduce_max(tf.concat([[0], tf.where(attended, tf.range(1, width + 1), 0)], axis=0))
    keep = tf.minimum(last + 1, width)
    return {k: v[:, :keep] for k, v in features.items()}, width


# ---------------------------------------------------------------------------------------------------- classifier
class _ClassifierModule(tf.Module):
    def __init__(self, classifier, packer, labels_file, num_labels, is_regression, pair, branches):
        super().__init__(name="bertkit_classifier")
        self.classifier = classifier
        self.config = classifier.encoder.config
        self.packer = packer
        self._packing = _Packing(packer)
        self._packing.outputs = _on_ids(self._outputs)
        self._packing.speed_outputs = _on_ids(self._speed_outputs, SPEED)
        self.is_regression = is_regression
        self.pair = pair
        if not is_regression:   # label names: the assets/labels.txt file, looked up in the graph
            self.labels_table = tf.lookup.StaticHashTable(
                tf.lookup.TextFileInitializer(labels_file, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
                                              tf.string, tf.lookup.TextFileIndex.WHOLE_LINE),
                default_value="")
        self.branches = branches
        self.num_layers = classifier.encoder.num_layers
        if branches is not None:
            from training import fastbert
            self.early_exit = fastbert.make_early_exit_fn(
                classifier.encoder, branches, fastbert.pooled_head(classifier.encoder, classifier.head))

    def outputs(self, features):
        return self._packing.outputs({k: tf.cast(features[k], tf.int32) for k in _ID_KEYS})

    def _outputs(self, features):
        features, _ = _trim(features)
        logits = tf.cast(self.classifier(features, training=False), tf.float32)
        if self.is_regression:
            return {"logits": logits, "score": logits[:, 0]}
        out = self._label_outputs(tf.nn.softmax(logits, axis=-1))
        out["logits"] = logits
        if self.branches is not None:
            out["exit_layer"] = tf.fill(tf.shape(logits)[:1], tf.constant(self.num_layers, tf.int32))
        return out

    def _label_outputs(self, probabilities):
        label_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {"probabilities": probabilities, "label_id": label_id, "label": self.labels_table.lookup(label_id)}

    def speed_outputs(self, features, speed):
        return self._packing.speed_outputs({k: tf.cast(features[k], tf.int32) for k in _ID_KEYS}, speed)

    def _speed_outputs(self, features, speed):
        features, _ = _trim(features)
        res = self.early_exit(features, speed)
        out = self._label_outputs(res["probabilities"])
        out["exit_layer"] = res["exit_layer"]
        return out

    def pack(self, text_a, text_b=None):
        return self._packing.two(text_a, text_b) if text_b is not None else self._packing.one(text_a)

    def parse(self, examples):
        spec = {"text_a": tf.io.FixedLenFeature([], tf.string)}
        if self.pair:
            spec["text_b"] = tf.io.FixedLenFeature([], tf.string, default_value="")
        feats = tf.io.parse_example(examples, spec)
        return feats["text_a"], feats.get("text_b")

    def signatures(self):
        sigs = {}
        if self.pair:
            sigs["serving_default"] = tf.function(
                lambda text_a, text_b: self.outputs(self.pack(text_a, text_b)),
                input_signature=[tf.TensorSpec([None], tf.string, name="text_a"),
                                 tf.TensorSpec([None], tf.string, name="text_b")])
        else:
            sigs["serving_default"] = tf.function(
                lambda text_a: self.outputs(self.pack(text_a)),
                input_signature=[tf.TensorSpec([None], tf.string, name="text_a")])
        sigs["serve_ids"] = tf.function(
            lambda input_ids, input_mask, segment_ids: self.outputs(
                _ids(input_ids, input_mask, segment_ids, self.config)),
            input_signature=IDS_SIGNATURE)
        sigs["serve_examples"] = tf.function(
            lambda examples: self.outputs(self.pack(*self.parse(examples))),
            input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        if self.branches is not None:
            if self.pair:
                sigs["serve_speed"] = tf.function(
                    lambda text_a, text_b, speed: self.speed_outputs(self.pack(text_a, text_b), speed),
                    input_signature=[tf.TensorSpec([None], tf.string, name="text_a"),
                                     tf.TensorSpec([None], tf.string, name="text_b"), SPEED])
            else:
                sigs["serve_speed"] = tf.function(
                    lambda text_a, speed: self.speed_outputs(self.pack(text_a), speed),
                    input_signature=[tf.TensorSpec([None], tf.string, name="text_a"), SPEED])
            sigs["serve_ids_speed"] = tf.function(
                lambda input_ids, input_mask, segment_ids, speed: self.speed_outputs(
                    _ids(input_ids, input_mask, segment_ids, self.config), speed),
                input_signature=IDS_SIGNATURE + [SPEED])
        return {name: fn.get_concrete_function() for name, fn in sigs.items()}


def _check_labels(labels, is_regression, num_outputs):
    labels = [str(x) for x in (labels or [])]
    if is_regression:
        if num_outputs != 1:
            raise bertkit_errors.UserError(f"is_regression: the classifier has {num_outputs} outputs, not 1")
        return labels
    if len(labels) != num_outputs:
        raise bertkit_errors.UserError(
            f"labels: {len(labels)} label names ({', '.join(labels[:10])}) for a classifier with {num_outputs} "
            "outputs")
    for lab in labels:
        if not lab.strip() or "\n" in lab or "\r" in lab:
            raise bertkit_errors.UserError(f"labels: label {lab!r} cannot be written one per line in labels.txt")
    if len(set(labels)) != len(labels):
        raise bertkit_errors.UserError(f"labels: duplicate label names in {labels}")
    return labels


def export_classifier(classifier, *, vocab_file, do_lower_case, max_seq_length, labels, is_regression=False,
                      pair=False, export_base, branches=None, warmup_texts=None):
    """Export a modeling.heads.Classifier (with .encoder and .head) to export_base/<next version>/; returns the
    version folder. `labels`: names in label-id order (ignored for regression). `branches`: a
    training.fastbert.BranchSet trained for this classifier (adds exit_layer and the speed signatures)."""
    num_outputs = int(classifier.head.units)
    labels = _check_labels(labels, is_regression, num_outputs)
    if branches is not None and is_regression:
        raise bertkit_errors.UserError("branches: FastBERT early exit needs a classifier, not a regression model")
    _check_seq_length(classifier.encoder, max_seq_length)
    packer = _packer(vocab_file, do_lower_case, max_seq_length)
    warmup_texts = list(DEFAULT_WARMUP_TEXTS if warmup_texts is None else warmup_texts) or [""]
    with _staging_dir(export_base) as tmp, tempfile.TemporaryDirectory() as src:
        labels_file = os.path.join(src, LABELS_FILE)
        if not is_regression:
            with open(labels_file, "w", encoding="utf-8") as f:
                f.write("\n".join(labels) + "\n")
        module = _ClassifierModule(classifier, packer, labels_file, num_outputs, bool(is_regression), bool(pair),
                                   branches)
        sigs = module.signatures()
        version_dir = os.path.join(tmp, "v")
        tf.saved_model.save(module, version_dir, signatures=sigs)
        text_inputs = {"text_a": _text_array(warmup_texts)}
        if pair:
            text_inputs["text_b"] = _text_array(warmup_texts[::-1])
        ids = {k: v.numpy() for k, v in module.pack(*(tf.constant(v) for v in text_inputs.values())).items()}
        requests = [("serving_default", text_inputs), ("serve_ids", ids),
                    ("serve_examples", {"examples": _serialized_examples(warmup_texts,
                                                                         text_inputs.get("text_b"))})]
        if branches is not None:
            requests.append(("serve_speed", {**text_inputs, "speed": np.float32(0.5)}))
            requests.append(("serve_ids_speed", {**ids, "speed": np.float32(0.5)}))
        _write_warmup(version_dir, requests)
        _write_metadata(version_dir, {
            "kind": "classifier", "labels": labels, "is_regression": bool(is_regression), "pair": bool(pair),
            "num_labels": num_outputs, "max_seq_length": int(max_seq_length), "do_lower_case": bool(do_lower_case),
            "fastbert": branches is not None, "num_layers": int(classifier.encoder.num_layers),
            "signatures": sorted(sigs)})
        return _publish(version_dir, os.fspath(export_base))


# ---------------------------------------------------------------------------------------------------- encoder
class _EncoderModule(tf.Module):
    def __init__(self, encoder, packer, pooling, l2_normalize):
        super().__init__(name="bertkit_encoder")
        self.encoder = encoder
        self.packer = packer
        self._packing = _Packing(packer)
        self._packing.run = _on_ids(self._run)
        self.pooling = pooling
        self.l2_normalize = l2_normalize

    def run(self, features):
        return self._packing.run({k: tf.cast(features[k], tf.int32) for k in _ID_KEYS})

    def _run(self, features):
        features, width = _trim(features)
        out = self.encoder(features, training=False)
        seq = tf.cast(out["sequence_output"], tf.float32)
        seq = tf.pad(seq, [[0, 0], [0, width - tf.shape(seq)[1]], [0, 0]])   # zeros where nothing was computed
        return {"pooled_output": tf.cast(out["pooled_output"], tf.float32), "sequence_output": seq}

    def text_outputs(self, text):
        features = self._packing.one(text)
        out = self.run(features)
        out["input_mask"] = features["input_mask"]
        return out

    def encode(self, text):
        features = self._packing.one(text)
        seq = self.run(features)["sequence_output"]
        if self.pooling == "cls":
            vec = seq[:, 0]
        else:
            mask = tf.cast(features["input_mask"], tf.float32)[:, :, None]
            vec = tf.reduce_sum(seq * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
        if self.l2_normalize:
            vec = tf.math.l2_normalize(vec, axis=-1)
        return {"embeddings": vec}

    def signatures(self):
        text = [tf.TensorSpec([None], tf.string, name="text")]
        sigs = {
            "serving_default": tf.function(self.text_outputs, input_signature=text),
            "serve_ids": tf.function(lambda input_ids, input_mask, segment_ids: self.run(
                _ids(input_ids, input_mask, segment_ids, self.encoder.config)), input_signature=IDS_SIGNATURE),
            "encode": tf.function(self.encode, input_signature=text),
        }
        return {name: fn.get_concrete_function() for name, fn in sigs.items()}


def export_encoder(encoder, vocab_file, do_lower_case, max_seq_length, export_base, pooling="cls",
                   l2_normalize=False):
    """Export a bertkit encoder to export_base/<next version>/; returns the version folder. `pooling` ("cls" or
    "mean") and `l2_normalize` choose what the `encode` signature returns."""
    pooling = str(pooling).lower()
    if pooling not in POOLINGS:
        raise bertkit_errors.UserError(f"--pooling={pooling}: must be one of {', '.join(POOLINGS)}")
    _check_seq_length(encoder, max_seq_length)
    packer = _packer(vocab_file, do_lower_case, max_seq_length)
    with _staging_dir(export_base) as tmp:
        module = _EncoderModule(encoder, packer, pooling, bool(l2_normalize))
        sigs = module.signatures()
        version_dir = os.path.join(tmp, "v")
        tf.saved_model.save(module, version_dir, signatures=sigs)
        texts = _text_array(DEFAULT_WARMUP_TEXTS)
        ids = {k: v.numpy() for k, v in module._packing.one(tf.constant(texts)).items()}
        _write_warmup(version_dir, [("serving_default", {"text": texts}), ("encode", {"text": texts}),
                                    ("serve_ids", ids)])
        _write_metadata(version_dir, {
            "kind": "encoder", "pooling": pooling, "l2_normalize": bool(l2_normalize),
            "max_seq_length": int(max_seq_length), "do_lower_case": bool(do_lower_case),
            "hidden_size": int(getattr(getattr(encoder, "config", None), "hidden_size", 0)) or None,
            "signatures": sorted(sigs)})
        return _publish(version_dir, os.fspath(export_base))


# ---------------------------------------------------------------------------------------------------- checkpoints
def _read_json(path, flag):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise bertkit_errors.UserError(f"--{flag}={path}: file not found") from None
    except (OSError, ValueError) as e:
        raise bertkit_errors.UserError(f"--{flag}={path}: cannot read JSON ({e})") from None
    if not isinstance(data, dict):
        raise bertkit_errors.UserError(f"--{flag}={path}: expected a JSON object")
    return data


def _bertkit_prefix(init_checkpoint):
    """(checkpoint prefix, {variable: shape}) when init_checkpoint is a TF2 object-based checkpoint with an `encoder`
    object (a bertkit checkpoint), else (None, None)."""
    prefix = tf.train.latest_checkpoint(init_checkpoint) if os.path.isdir(init_checkpoint) else init_checkpoint
    if not prefix or not tf.io.gfile.exists(prefix + ".index"):
        return None, None
    try:
        shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError):
        return None, None
    if not any(k.startswith("encoder/") for k in shapes):
        return None, None
    return prefix, shapes


def _restore(init_checkpoint, prefix, **objects):
    """checkpoints.read_objects(prefix, **objects): every existing variable matched, or a one-line UserError."""
    try:
        checkpoints.read_objects(prefix, **objects)
    except (AssertionError, ValueError) as e:
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise bertkit_errors.UserError(
            f"--init_checkpoint={init_checkpoint}: checkpoint does not match the model config ({first})") from None


def _branch_set(shapes, num_layers, num_labels):
    """A built training.fastbert.BranchSet shaped like the checkpoint's `branches`, or None when it has none."""
    if not any(k.startswith("branches/") for k in shapes):
        return None
    from training import fastbert
    narrow = shapes.get("branches/branch_0/dense_narrow/_kernel/.ATTRIBUTES/VARIABLE_VALUE")
    query = shapes.get("branches/branch_0/self_attention/_query_dense/_kernel/.ATTRIBUTES/VARIABLE_VALUE")
    if not narrow or not query:
        raise bertkit_errors.UserError("--init_checkpoint: the checkpoint's `branches` (FastBERT) are not "
                                       "training.fastbert.BranchSet branches")
    return fastbert.BranchSet(num_layers, num_labels, branch_hidden_size=int(narrow[1]), num_heads=int(query[1]))


_PAIR_TASKS = {"mrpc", "sts-b", "qqp", "mnli", "mnli-mm", "ax", "qnli", "rte", "wnli", "xnli"}


def _task_is_pair(meta):
    """Whether task_meta.json (data/finetuning.py) describes a sentence-pair task: an explicit "pair", a custom
    task's text_b_column, or a GLUE/XNLI pair task."""
    if "pair" in meta:
        return bool(meta["pair"])
    processor = meta.get("processor") or {}
    if "text_b_column" in processor:
        return processor["text_b_column"] is not None
    return str(meta.get("task") or processor.get("task_name") or "").lower() in _PAIR_TASKS


def export_checkpoint(init_checkpoint, *, export_dir=None, bert_config_file=None, vocab_file=None,
                      do_lower_case=None, max_seq_length=None, task_meta=None, pooling="cls", l2_normalize=False,
                      pair=None):
    """export_model.py's logic: load a checkpoint and export it; returns the version folder.

    init_checkpoint: a bertkit model directory (checkpoints + bert_config.json, vocab.txt, bertkit.json and, for a
    classifier, task_meta.json) or a checkpoint prefix inside one; other formats (original TF1 BERT, HuggingFace,
    ...) through modeling.checkpoints (encoders only; a HuggingFace vocabulary may be a tokenizer.json). Unset
    arguments default to the files of the model directory. With a task_meta (argument, or task_meta.json in the model
    directory) a classifier is exported (its checkpoint must hold `classifier_head`, and `branches` for FastBERT),
    otherwise an encoder.
    pair=None: a sentence-pair task (text_a, text_b inputs) when task_meta says so (`_task_is_pair`)."""
    from modeling import ModelConfig, build_classifier, build_encoder

    init_checkpoint = os.fspath(init_checkpoint)
    if not (os.path.isdir(init_checkpoint) or tf.io.gfile.exists(init_checkpoint + ".index")
            or os.path.isfile(init_checkpoint)):
        raise bertkit_errors.UserError(f"--init_checkpoint={init_checkpoint}: no such checkpoint or directory")
    model_dir = init_checkpoint if os.path.isdir(init_checkpoint) else os.path.dirname(init_checkpoint) or "."

    def beside(name):
        path = os.path.join(model_dir, name)
        return path if os.path.isfile(path) else None

    meta = None
    if task_meta:
        meta = _read_json(task_meta, "task_meta")
    elif beside("task_meta.json"):
        task_meta = beside("task_meta.json")
        meta = _read_json(task_meta, "task_meta")
    bertkit_json = _read_json(beside("bertkit.json"), "init_checkpoint") if beside("bertkit.json") else {}
    if do_lower_case is None:
        do_lower_case = bertkit_json.get("do_lower_case", (meta or {}).get("do_lower_case"))
    if max_seq_length is None:
        max_seq_length = (meta or {}).get("max_seq_length") or bertkit_json.get("max_seq_length") or 128
    export_dir = export_dir or os.path.join(model_dir, "export")
    bert_config_file = bert_config_file or beside("bert_config.json")
    vocab_file = vocab_file or beside("vocab.txt")

    prefix, shapes = _bertkit_prefix(init_checkpoint)
    if prefix is None:
        # Not a bertkit checkpoint: other formats (TF1, HuggingFace, keras-hub) through modeling.checkpoints.
        if meta is not None:
            raise bertkit_errors.UserError(
                f"--task_meta={task_meta}: a classifier export needs a bertkit checkpoint with a classifier_head; "
                f"{init_checkpoint} is not one (export it as an encoder without --task_meta)")
        config = ModelConfig.from_json_file(bert_config_file) if bert_config_file else None
        bundle = checkpoints.load_checkpoint(init_checkpoint, config=config, with_heads=False)
        vocab_file = vocab_file or bundle.vocab_file
        if do_lower_case is None:
            do_lower_case = bundle.do_lower_case
        if not vocab_file:
            raise bertkit_errors.UserError("--vocab_file: not given and the checkpoint has no vocabulary")
        with tempfile.TemporaryDirectory() as tmp:
            if os.path.basename(vocab_file) == checkpoints.TOKENIZER_JSON:  # as vocab.txt, for the SavedModel assets
                vocab_file = checkpoints.write_vocab(vocab_file, os.path.join(tmp, "vocab.txt"))
            return export_encoder(bundle.encoder, vocab_file, True if do_lower_case is None else do_lower_case,
                                  int(max_seq_length), export_dir, pooling=pooling, l2_normalize=l2_normalize)

    if not bert_config_file:
        raise bertkit_errors.UserError(
            f"--bert_config_file: not given and {os.path.join(model_dir, 'bert_config.json')} does not exist")
    if not vocab_file:
        raise bertkit_errors.UserError(
            f"--vocab_file: not given and {os.path.join(model_dir, 'vocab.txt')} does not exist")
    if do_lower_case is None:
        do_lower_case = True
    config = ModelConfig.from_json_file(bert_config_file)
    if meta is None:
        encoder = build_encoder(config)
        _restore(init_checkpoint, prefix, encoder=encoder)
        return export_encoder(encoder, vocab_file, do_lower_case, int(max_seq_length), export_dir,
                              pooling=pooling, l2_normalize=l2_normalize)

    is_regression = bool(meta.get("is_regression", False))
    labels = [str(x) for x in meta.get("labels") or []]
    if not is_regression and not labels:
        raise bertkit_errors.UserError(f"--task_meta={task_meta}: no 'labels' list")
    num_labels = 1 if is_regression else len(labels)
    if not any(k.startswith("classifier_head/") for k in shapes):
        raise bertkit_errors.UserError(
            f"--init_checkpoint={init_checkpoint}: no classifier_head in the checkpoint (not a fine-tuned "
            "classifier; export an encoder without --task_meta)")
    head_bias = shapes.get("classifier_head/dense/bias/.ATTRIBUTES/VARIABLE_VALUE")
    if head_bias and int(head_bias[0]) != num_labels:
        raise bertkit_errors.UserError(
            f"--task_meta={task_meta}: {num_labels} label(s) but the checkpoint's classifier_head has "
            f"{head_bias[0]} outputs")
    classifier = build_classifier(config, num_labels)
    objects = {"encoder": classifier.encoder, "classifier_head": classifier.head}
    branches = None if is_regression else _branch_set(shapes, config.num_hidden_layers, num_labels)
    if branches is not None:
        from training import fastbert
        ones = tf.ones([1, 2], tf.int32)
        fastbert.run_with_branches(classifier.encoder, branches, fastbert.pooled_head(classifier.encoder,
                                                                                      classifier.head),
                                   {"input_ids": ones, "input_mask": ones, "segment_ids": ones * 0})  # build
        objects["branches"] = branches
    _restore(init_checkpoint, prefix, **objects)
    if pair is None:
        pair = _task_is_pair(meta)
    return export_classifier(classifier, vocab_file=vocab_file, do_lower_case=do_lower_case,
                             max_seq_length=int(max_seq_length), labels=labels, is_regression=is_regression,
                             pair=pair, export_base=export_dir, branches=branches)
