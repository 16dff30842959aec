"""SavedModel export in TensorFlow Serving's layout: `export_base/<version>/` with raw-text signatures.

    export.export_classifier(classifier, vocab_file=..., do_lower_case=True, max_seq_length=128, labels=[...],
                             is_regression=False, pair=False, export_base="export", branches=None,
                             warmup_texts=None) -> version_dir
    export.export_encoder(encoder, vocab_file, do_lower_case, max_seq_length, export_base, pooling="cls",
                          l2_normalize=False) -> version_dir

A version is written into a hidden temporary folder beside the versions (`export_base/.tmp-export-...`) and renamed
to its number when complete, so TF Serving and serve.py never see a half-written export (serving/export_dirs.py:
versions, staging, the assets.extra files; serving/checkpoint_export.py: export_model.py's checkpoint loading).
Tokenization and packing run in the graph (tokenization.layers.BertTextPacker); the vocabulary and, for
classifiers, `labels.txt` (one label per line, in label-id order) are SavedModel assets (`assets/`).
`assets.extra/tf_serving_warmup_requests` holds TF Serving warm-up requests (PredictionLog protos, one per
signature), `assets.extra/bertkit_export.json` describes the export (kind, labels, max_seq_length, ...).

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
import os
import tempfile

import numpy as np
import tensorflow as tf

import bertkit_errors
from serving import export_dirs
from tokenization.layers import BertTextPacker
from training import fastbert

LABELS_FILE = "labels.txt"
DEFAULT_WARMUP_TEXTS = ("The market rallied after strong results.", "",
                        "A longer sentence about sport, politics and technology, with punctuation!")
POOLINGS = ("cls", "mean")


# ---------------------------------------------------------------------------------------------------- helpers
_PACKERS = {}


def _packer(vocab_file, do_lower_case, max_seq_length):
    """A BertTextPacker, reused across exports of the same vocabulary file (building one takes seconds)."""
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
    with export_dirs.staging_dir(export_base) as tmp, tempfile.TemporaryDirectory() as src:
        labels_file = os.path.join(src, LABELS_FILE)
        if not is_regression:
            with open(labels_file, "w", encoding="utf-8") as f:
                f.write("\n".join(labels) + "\n")
        module = _ClassifierModule(classifier, packer, labels_file, num_outputs, bool(is_regression), bool(pair),
                                   branches)
        sigs = module.signatures()
        version_dir = os.path.join(tmp, "v")
        tf.saved_model.save(module, version_dir, signatures=sigs)
        text_inputs = {"text_a": export_dirs.text_array(warmup_texts)}
        if pair:
            text_inputs["text_b"] = export_dirs.text_array(warmup_texts[::-1])
        ids = {k: v.numpy() for k, v in module.pack(*(tf.constant(v) for v in text_inputs.values())).items()}
        requests = [("serving_default", text_inputs), ("serve_ids", ids),
                    ("serve_examples", {"examples": export_dirs.serialized_examples(warmup_texts,
                                                                         text_inputs.get("text_b"))})]
        if branches is not None:
            requests.append(("serve_speed", {**text_inputs, "speed": np.float32(0.5)}))
            requests.append(("serve_ids_speed", {**ids, "speed": np.float32(0.5)}))
        export_dirs.write_warmup(version_dir, requests)
        export_dirs.write_metadata(version_dir, {
            "kind": "classifier", "labels": labels, "is_regression": bool(is_regression), "pair": bool(pair),
            "num_labels": num_outputs, "max_seq_length": int(max_seq_length), "do_lower_case": bool(do_lower_case),
            "fastbert": branches is not None, "num_layers": int(classifier.encoder.num_layers),
            "signatures": sorted(sigs)})
        return export_dirs.publish(version_dir, os.fspath(export_base))


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
    with export_dirs.staging_dir(export_base) as tmp:
        module = _EncoderModule(encoder, packer, pooling, bool(l2_normalize))
        sigs = module.signatures()
        version_dir = os.path.join(tmp, "v")
        tf.saved_model.save(module, version_dir, signatures=sigs)
        texts = export_dirs.text_array(DEFAULT_WARMUP_TEXTS)
        ids = {k: v.numpy() for k, v in module._packing.one(tf.constant(texts)).items()}
        export_dirs.write_warmup(version_dir, [("serving_default", {"text": texts}), ("encode", {"text": texts}),
                                    ("serve_ids", ids)])
        export_dirs.write_metadata(version_dir, {
            "kind": "encoder", "pooling": pooling, "l2_normalize": bool(l2_normalize),
            "max_seq_length": int(max_seq_length), "do_lower_case": bool(do_lower_case),
            "hidden_size": int(getattr(getattr(encoder, "config", None), "hidden_size", 0)) or None,
            "signatures": sorted(sigs)})
        return export_dirs.publish(version_dir, os.fspath(export_base))
