"""FastBERT (Liu et al. 2020, "FastBERT: a Self-distilling BERT with Adaptive Inference Time").

A small "student" classifier (`BranchClassifier`) sits after each of the first L - 1 transformer layers; the model's
own final classifier ("teacher") sits after layer L. The branches are trained by self-distillation (KL from the final
distribution, `self_distillation_loss`) with the backbone and final classifier frozen. At inference an example
leaves at the first layer whose branch is confident enough: normalized entropy < `speed` (`early_exit_predict`).

Heads are called as `head(sequence_output [B, T, H], input_mask [B, T], training=...) -> logits [B, C]`;
`BranchClassifier` has that signature; `pooled_head(encoder, head)` adapts a classifier head that takes the pooled
output (`modeling.heads.ClassificationHead`).

The encoder is used through its layer-by-layer API (DESIGN.md): `encoder.embed`, `encoder.run_layer`,
`encoder.num_layers`, `encoder.pool`.

Pieces for run_classifier.py --fastbert: stage 2 training (`SelfDistillationNetwork`, `self_distillation_loss_fn`,
`self_distillation_metric_names`, `unlabelled_text_dataset` for --distill_file). The evaluation over speeds
(`evaluate_speeds` -> rows, `speed_results_for_eval_file`, `format_speed_table`, `log_speed_curve` for TensorBoard)
is in training/fastbert_speed.py.
"""
import csv
import io
import math
import os

import keras
import numpy as np
import tensorflow as tf

import bertkit_errors
from data import finetuning, processors
from modeling.heads import ClassificationHead


# --------------------------------------------------------------------------------------------------------------------
# Branch classifiers


class BranchClassifier(keras.layers.Layer):
    """FastBERT's student classifier: tanh(Dense(branch_hidden_size)) -> multi-head self-attention (num_heads heads,
    padding keys masked) -> the [CLS] position -> tanh(Dense(branch_hidden_size)) -> Dense(num_labels) logits.
    Only the [CLS] query is computed (keys and values use the whole sequence): the same [CLS] output as full
    self-attention, at a fraction of the cost."""

    def __init__(self, num_labels, branch_hidden_size=128, num_heads=2, dropout_rate=0.1, **kwargs):
        super().__init__(**kwargs)
        if branch_hidden_size % num_heads:
            raise ValueError(f"branch_hidden_size {branch_hidden_size} is not a multiple of num_heads {num_heads}")
        self.num_labels = int(num_labels)
        self.branch_hidden_size = int(branch_hidden_size)
        self.num_heads = int(num_heads)
        self.dropout_rate = float(dropout_rate)
        self.dense_narrow = keras.layers.Dense(branch_hidden_size, activation="tanh", name="dense_narrow")
        self.self_attention = keras.layers.MultiHeadAttention(
            num_heads=num_heads, key_dim=branch_hidden_size // num_heads, dropout=dropout_rate, name="self_attention"
        )
        self.dense = keras.layers.Dense(branch_hidden_size, activation="tanh", name="dense")
        self.classifier = keras.layers.Dense(num_labels, name="classifier")

    def build(self, input_shape):
        b = self.branch_hidden_size
        self.dense_narrow.build(input_shape)
        self.self_attention.build(query_shape=(None, 1, b), value_shape=(None, None, b), key_shape=(None, None, b))
        self.dense.build((None, b))
        self.classifier.build((None, b))
        self.built = True

    def call(self, sequence_output, input_mask, training=False):
        h = self.dense_narrow(sequence_output)
        mask = tf.cast(input_mask, tf.bool)[:, None, :]  # [B, 1, T]: the [CLS] query attends to real tokens
        cls = self.self_attention(h[:, :1], h, h, attention_mask=mask, training=training)[:, 0]
        return self.classifier(self.dense(cls))

    def get_config(self):
        config = super().get_config()
        config.update(num_labels=self.num_labels, branch_hidden_size=self.branch_hidden_size,
                      num_heads=self.num_heads, dropout_rate=self.dropout_rate)
        return config


class BranchSet(keras.layers.Layer):
    """The L - 1 branch classifiers, each also a named attribute `branch_{i}` so that `tf.train.Checkpoint(
    branches=branch_set)` saves them all (Keras 3 lists are not followed by tf.train.Checkpoint). Iterable/indexable
    like a list; branch i follows transformer layer i (0-based)."""

    def __init__(self, num_layers, num_labels, branch_hidden_size=128, num_heads=2, dropout_rate=0.1,
                 name="branches", **kwargs):
        super().__init__(name=name, **kwargs)
        if num_layers < 1:
            raise ValueError("FastBERT needs an encoder with at least one layer")
        self._branch_list = []
        for i in range(num_layers - 1):
            b = BranchClassifier(num_labels, branch_hidden_size, num_heads, dropout_rate, name=f"branch_{i}")
            setattr(self, f"branch_{i}", b)
            self._branch_list.append(b)

    def __len__(self):
        return len(self._branch_list)

    def __getitem__(self, i):
        return self._branch_list[i]

    def __iter__(self):
        return iter(self._branch_list)

    def call(self, *args, **kwargs):
        raise TypeError("call the branches one at a time: branch_set[i](sequence_output, input_mask)")


def pooled_head(encoder, head):
    """Adapt a head taking the pooled [CLS] output (`head(pooled, training=...)`) to the branch signature."""

    def fn(sequence_output, input_mask, training=False):
        return head(encoder.pool(sequence_output), training=training)

    fn.wrapped_head = head
    return fn


# --------------------------------------------------------------------------------------------------------------------
# Entropy, losses


def normalized_entropy(probs):
    """Entropy of each distribution over the last axis divided by log(num_classes): 1 for uniform, 0 for one-hot."""
    probs = tf.cast(probs, tf.float32)
    num_classes = probs.shape[-1]
    if num_classes is None or num_classes < 2:
        raise ValueError(f"normalized_entropy needs at least 2 classes, got {num_classes}")
    ent = -tf.reduce_sum(tf.math.multiply_no_nan(tf.math.log(probs), probs), axis=-1)
    return tf.maximum(ent, 0.0) / math.log(num_classes)


def self_distillation_loss(branch_logits, final_logits):
    """sum over branches of KL(p_final || p_branch), each averaged over the batch (sum over classes); p_final is
    softmax(final_logits) under stop_gradient."""
    final_logits = tf.cast(final_logits, tf.float32)
    p_t = tf.stop_gradient(tf.nn.softmax(final_logits, axis=-1))
    log_p_t = tf.stop_gradient(tf.nn.log_softmax(final_logits, axis=-1))
    total = tf.constant(0.0, tf.float32)
    for logits in branch_logits:
        log_p_s = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
        kl = tf.reduce_sum(tf.math.multiply_no_nan(log_p_t - log_p_s, p_t), axis=-1)
        total = total + tf.reduce_mean(kl)
    return total


def run_with_branches(encoder, branches, final_head, inputs, training=False):
    """Full forward pass for self-distillation training: (list of L - 1 branch logits, final logits)."""
    _check_branches(encoder, branches)
    h, mask_bias = encoder.embed(inputs, training)
    mask = inputs["input_mask"]
    branch_logits = []
    for i in range(encoder.num_layers):
        h, _ = encoder.run_layer(i, h, mask_bias, training)
        if i < encoder.num_layers - 1:
            branch_logits.append(branches[i](h, mask, training=training))
    return branch_logits, final_head(h, mask, training=training)


def _check_branches(encoder, branches):
    if len(branches) != encoder.num_layers - 1:
        raise ValueError(f"FastBERT needs num_layers - 1 = {encoder.num_layers - 1} branches, got {len(branches)}")


# --------------------------------------------------------------------------------------------------------------------
# Early-exit inference

INPUT_SIGNATURE = (
    {
        "input_ids": tf.TensorSpec([None, None], tf.int32, name="input_ids"),
        "input_mask": tf.TensorSpec([None, None], tf.int32, name="input_mask"),
        "segment_ids": tf.TensorSpec([None, None], tf.int32, name="segment_ids"),
    },
    tf.TensorSpec([], tf.float32, name="speed"),
)


def _warm_up(encoder, branches, final_head):
    """One tiny eager pass so every layer has its variables before tracing (variables must not be created inside
    the tf.cond branches of the early-exit graph). Returns the number of classes."""
    ones = tf.ones([1, 2], tf.int32)
    inputs = {"input_ids": ones, "input_mask": ones, "segment_ids": tf.zeros([1, 2], tf.int32)}
    branch_logits, final_logits = run_with_branches(encoder, branches, final_head, inputs, training=False)
    num_classes = int(final_logits.shape[-1])
    for logits in branch_logits:
        if int(logits.shape[-1]) != num_classes:
            raise ValueError(f"branch classifiers give {logits.shape[-1]} classes, the final head {num_classes}")
    if num_classes < 2:
        raise ValueError("FastBERT early exit needs a classifier with at least 2 classes (not regression)")
    return num_classes


def make_early_exit_fn(encoder, branches, final_head):
    """A tf.function(inputs, speed) -> {"probabilities": [B, C] float32, "exit_layer": [B] int32}, traced once for
    any batch size and sequence length (input_signature = INPUT_SIGNATURE), so it can be exported in a SavedModel.

    Layer i (0-based) runs on the surviving examples only (tf.gather); examples whose branch-i distribution has
    normalized entropy < speed leave with exit_layer = i + 1, scattered into the results by their batch index; after
    the last layer the final head's distribution is used for everybody left. Once nobody survives, the remaining
    layers are skipped by tf.cond (the skip branch is a pass-through). speed = 0 never exits early (entropy >= 0)."""
    _check_branches(encoder, branches)
    num_classes = _warm_up(encoder, branches, final_head)
    num_layers = encoder.num_layers

    @tf.function(input_signature=INPUT_SIGNATURE)
    def early_exit(inputs, speed):
        h, mask_bias = encoder.embed(inputs, False)
        mask = inputs["input_mask"]
        batch = tf.shape(mask)[0]
        survivors = tf.range(batch, dtype=tf.int32)
        probs_out = tf.zeros([batch, num_classes], tf.float32)
        exit_out = tf.zeros([batch], tf.int32)
        state = (h, mask_bias, mask, survivors, probs_out, exit_out)

        for i in range(num_layers):
            last = i == num_layers - 1

            def step(state=state, i=i, last=last):
                h, mask_bias, mask, survivors, probs_out, exit_out = state
                h, _ = encoder.run_layer(i, h, mask_bias, False)
                head = final_head if last else branches[i]
                probs = tf.nn.softmax(tf.cast(head(h, mask, training=False), tf.float32), axis=-1)
                if last:
                    leave = tf.ones_like(survivors, dtype=tf.bool)
                else:
                    leave = normalized_entropy(probs) < speed
                leave_pos = tf.cast(tf.where(leave)[:, 0], tf.int32)
                leave_ids = tf.gather(survivors, leave_pos)[:, None]
                probs_out = tf.tensor_scatter_nd_update(probs_out, leave_ids, tf.gather(probs, leave_pos))
                exit_out = tf.tensor_scatter_nd_update(
                    exit_out, leave_ids, tf.fill(tf.shape(leave_pos), tf.constant(i + 1, tf.int32))
                )
                stay = tf.cast(tf.where(tf.logical_not(leave))[:, 0], tf.int32)
                return (tf.gather(h, stay), tf.gather(mask_bias, stay), tf.gather(mask, stay),
                        tf.gather(survivors, stay), probs_out, exit_out)

            def skip(state=state):
                return tuple(tf.identity(x) for x in state)

            state = tf.cond(tf.size(state[3]) > 0, step, skip)
        return {"probabilities": state[4], "exit_layer": state[5]}

    return early_exit


def make_full_model_fn(encoder, final_head):
    """The plain model under the same input signature: tf.function(inputs) -> probabilities [B, C] from the final
    head after all layers. `make_early_exit_fn(...)(inputs, 0.0)["probabilities"]` equals it bit for bit. (Versus a
    graph traced with static shapes, or eager, results can differ in the last float32 bit: TF picks kernels by the
    static shapes it knows.)"""

    @tf.function(input_signature=INPUT_SIGNATURE[:1])
    def full_model(inputs):
        h, mask_bias = encoder.embed(inputs, False)
        for i in range(encoder.num_layers):
            h, _ = encoder.run_layer(i, h, mask_bias, False)
        return tf.nn.softmax(tf.cast(final_head(h, inputs["input_mask"], training=False), tf.float32), axis=-1)

    return full_model


_EARLY_EXIT_CACHE = {}


def early_exit_predict(encoder, branches, final_head, inputs, speed):
    """Early-exit inference (see make_early_exit_fn): returns (probabilities [B, C], exit_layer [B] int32).
    The traced function is cached per (encoder, branches, final_head); `clear_early_exit_cache()` releases it."""
    key = (id(encoder), id(branches), id(final_head))
    entry = _EARLY_EXIT_CACHE.get(key)
    if entry is None or entry[0] is not encoder or entry[1] is not branches or entry[2] is not final_head:
        entry = (encoder, branches, final_head, make_early_exit_fn(encoder, branches, final_head))
        _EARLY_EXIT_CACHE[key] = entry
    feed = {k: tf.cast(inputs[k], tf.int32) for k in ("input_ids", "input_mask", "segment_ids")}
    out = entry[3](feed, tf.constant(speed, tf.float32))
    return out["probabilities"], out["exit_layer"]


def clear_early_exit_cache():
    _EARLY_EXIT_CACHE.clear()


# --------------------------------------------------------------------------------------------------------------------
# FLOPs (multiply-adds counted as 2 FLOPs; softmax, norms and activations ignored)


def transformer_layer_flops(seq_length, hidden_size, intermediate_size):
    t, h, i = seq_length, hidden_size, intermediate_size
    projections = 2 * 4 * t * h * h  # Q, K, V, output
    attention = 2 * 2 * t * t * h  # scores and context
    ffn = 2 * 2 * t * h * i
    return projections + attention + ffn


def branch_flops(seq_length, hidden_size, branch_hidden_size=128, num_labels=2):
    t, h, b = seq_length, hidden_size, branch_hidden_size
    narrow = 2 * t * h * b
    attention = 2 * 2 * t * b * b + 2 * b * b + 2 * 2 * t * b + 2 * b * b  # K, V; Q([CLS]); scores+context; out
    return narrow + attention + 2 * b * b + 2 * b * num_labels


def flops_per_layer(seq_length, hidden_size, intermediate_size, branch_hidden_size=128, num_labels=2,
                    final_head_flops=None):
    """{"layer": one transformer layer, "branch": one branch classifier, "final_head": the final classifier
    (default: a pooler + dense classifier)} in FLOPs for one example of `seq_length` tokens."""
    if final_head_flops is None:
        final_head_flops = 2 * hidden_size * hidden_size + 2 * hidden_size * num_labels
    return {
        "layer": transformer_layer_flops(seq_length, hidden_size, intermediate_size),
        "branch": branch_flops(seq_length, hidden_size, branch_hidden_size, num_labels),
        "final_head": final_head_flops,
    }


def example_flops(exit_layer, num_layers, flops):
    """FLOPs spent on one example leaving at `exit_layer` (1-based): its layers, the branches it passed through
    (one per layer before the last) and the final head when it reached the last layer."""
    e = int(exit_layer)
    if not 1 <= e <= num_layers:
        raise ValueError(f"exit layer {e} is outside 1..{num_layers}")
    cost = e * flops["layer"] + min(e, num_layers - 1) * flops["branch"]
    if e == num_layers:
        cost += flops["final_head"]
    return cost


def relative_flops(exit_layers, num_layers, flops):
    """Mean FLOPs over the examples relative to the full model (all layers + final head, no branches). Can exceed 1
    when most examples run to the end (the branches add work)."""
    exit_layers = [int(e) for e in (exit_layers.numpy() if hasattr(exit_layers, "numpy") else exit_layers)]
    if not exit_layers:
        return 0.0
    full = num_layers * flops["layer"] + flops["final_head"]
    return sum(example_flops(e, num_layers, flops) for e in exit_layers) / (len(exit_layers) * full)


# --------------------------------------------------------------------------------------------------------------------
# Stage 2: self-distillation training (backbone and final classifier frozen, branches trained)


def as_sequence_head(encoder, head):
    """The final classifier in the branch signature `head(sequence_output, input_mask, training)`: a
    `modeling.heads.ClassificationHead` (it takes the pooled output) is wrapped with `pooled_head`; anything else
    (a `BranchClassifier`, an already wrapped head) is returned as is."""
    if isinstance(head, ClassificationHead):
        return pooled_head(encoder, head)
    return head


class SelfDistillationNetwork(keras.Model):
    """FastBERT stage 2 network: `call(features, training) -> {"branch_logits": [L - 1 x [B, C]], "final_logits":
    [B, C]}`.

    The encoder and the final head always run with training=False (frozen: dropout off) and their outputs are cut
    from the gradient (`tf.stop_gradient`), so the backward pass only goes through the branches, which run with
    `training`. Train it with `TrainerModel(net, self_distillation_loss_fn(), self_distillation_metric_names(
    len(branches)), trainable_variables_fn=lambda: branches.trainable_variables)`.

    `final_head`: the branch signature `head(sequence_output, input_mask, training)` or a
    `modeling.heads.ClassificationHead` (pooled output; wrapped with `pooled_head`).
    """

    def __init__(self, encoder, final_head, branches, name="self_distillation", **kwargs):
        super().__init__(name=name, **kwargs)
        _check_branches(encoder, branches)
        self.encoder = encoder
        self.branches = branches
        self._final_head_fn = as_sequence_head(encoder, final_head)
        layer = getattr(self._final_head_fn, "wrapped_head", self._final_head_fn)
        # Track the head's variables when it is a layer (a plain function has none to track).
        self.final_head = layer if isinstance(layer, keras.layers.Layer) else None

    def build(self, input_shape=None):
        """Create every variable with one tiny eager pass (a [1, 2] batch)."""
        if not self.built:
            ones = tf.ones([1, 2], tf.int32)
            self.call({"input_ids": ones, "input_mask": ones, "segment_ids": tf.zeros([1, 2], tf.int32)})
            self.built = True

    def call(self, features, training=False):
        h, mask_bias = self.encoder.embed(features, False)
        mask = features["input_mask"]
        num_layers = self.encoder.num_layers
        branch_logits = []
        for i in range(num_layers):
            h, _ = self.encoder.run_layer(i, h, mask_bias, False)
            if i < num_layers - 1:
                branch_logits.append(self.branches[i](tf.stop_gradient(h), mask, training=training))
        final_logits = tf.stop_gradient(self._final_head_fn(h, mask, training=False))
        return {"branch_logits": branch_logits, "final_logits": final_logits}


def self_distillation_metric_names(num_branches):
    """Metric names of `self_distillation_loss_fn` for `num_branches` branches (branch k follows layer k,
    1-based): kl_layer_k, agreement_layer_k (fraction predicting the final classifier's class), mean_agreement."""
    n = int(num_branches)
    return ([f"kl_layer_{k}" for k in range(1, n + 1)] + [f"agreement_layer_{k}" for k in range(1, n + 1)]
            + ["mean_agreement"])


def self_distillation_loss_fn(weight_key="is_real_example"):
    """TrainerModel loss_fn over SelfDistillationNetwork outputs: (features, outputs) -> (loss, metrics).

    loss = sum over branches of the mean over examples of KL(p_final || p_branch) (`self_distillation_loss`); when
    the features carry `weight_key` (padding rows of eval sets) the means are weighted by it. No labels needed."""

    def loss_fn(features, outputs):
        final_logits = tf.cast(outputs["final_logits"], tf.float32)
        p_t = tf.stop_gradient(tf.nn.softmax(final_logits, axis=-1))
        log_p_t = tf.stop_gradient(tf.nn.log_softmax(final_logits, axis=-1))
        teacher_class = tf.argmax(final_logits, axis=-1, output_type=tf.int32)
        weights = features.get(weight_key) if weight_key else None
        if weights is not None:
            weights = tf.reshape(tf.cast(weights, tf.float32), [-1])
        total = tf.constant(0.0, tf.float32)
        metrics, agreements = {}, []
        for k, logits in enumerate(outputs["branch_logits"], start=1):
            logits = tf.cast(logits, tf.float32)
            log_p_s = tf.nn.log_softmax(logits, axis=-1)
            kl = tf.reduce_sum(tf.math.multiply_no_nan(log_p_t - log_p_s, p_t), axis=-1)  # [B]
            if weights is None:
                total += tf.reduce_mean(kl)
            else:
                total += tf.math.divide_no_nan(tf.reduce_sum(kl * weights), tf.reduce_sum(weights))
            agree = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), teacher_class), tf.float32)
            agreements.append(agree)
            metrics[f"kl_layer_{k}"] = (kl, weights)
            metrics[f"agreement_layer_{k}"] = (agree, weights)
        if agreements:
            metrics["mean_agreement"] = (tf.reduce_mean(tf.stack(agreements, 0), 0), weights)
        else:
            metrics["mean_agreement"] = (tf.ones_like(teacher_class, tf.float32), weights)
        return total, metrics

    return loss_fn


# --------------------------------------------------------------------------------------------------------------------
# Unlabelled text for self-distillation (--distill_file)

_TEXT_COLUMNS = ("text", "sentence")


def _decode_lines(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise bertkit_errors.UserError(f"{path}: cannot read ({e.strerror})") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    lines = []
    for n, raw in enumerate(raw_lines, start=1):
        try:
            lines.append(raw.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as e:
            raise bertkit_errors.UserError(
                f"{path}:{n}: not valid UTF-8 ({e.reason} at byte {e.start} of the line)") from None
    return lines


def read_unlabelled_texts(path, text_column=None):
    """The texts of `path`: one text per line (blank lines skipped), or, for a .tsv/.csv file, a file whose first
    line has a tab-separated `text`/`sentence` field, or whenever `text_column` is given, the `text_column` (default
    "text", else "sentence") column of a delimited file with a header. UserError naming the file and line for
    unreadable, non-UTF-8, malformed or empty files."""
    lines = _decode_lines(path)
    ext = os.path.splitext(path)[1].lower()
    first_fields = lines[0].split("\t") if lines else []
    delimited = (text_column is not None or ext in (".tsv", ".csv")
                 or (len(first_fields) > 1 and any(f.strip().lower() in _TEXT_COLUMNS for f in first_fields)))
    texts = []
    if not delimited:
        texts = [line.strip() for line in lines if line.strip()]
        if not texts:
            raise bertkit_errors.UserError(f"{path}: no text (the file is empty)")
        return texts
    if not lines:
        raise bertkit_errors.UserError(f"{path}: empty file (expected a header line with a "
                                       f"{text_column or 'text'} column)")
    if ext == ".csv":
        rows = csv.reader(io.StringIO("\n".join(lines) + "\n"))
    else:
        rows = csv.reader(io.StringIO("\n".join(lines) + "\n"), delimiter="\t", quoting=csv.QUOTE_NONE)
    try:
        header = next(rows)
    except (csv.Error, StopIteration) as e:
        raise bertkit_errors.UserError(f"{path}:1: cannot read the header ({e})") from None
    names = [h.strip() for h in header]
    if text_column is not None:
        if text_column not in names:
            raise bertkit_errors.UserError(
                f"{path}:1: no column {text_column!r} in the header ({', '.join(names)})")
        col = names.index(text_column)
    else:
        lowered = [h.lower() for h in names]
        found = [c for c in _TEXT_COLUMNS if c in lowered]
        if not found:
            raise bertkit_errors.UserError(
                f"{path}:1: no 'text' or 'sentence' column in the header ({', '.join(names)}); "
                "name the column to use with text_column")
        col = lowered.index(found[0])
    try:
        for fields in rows:
            if not fields or not any(f.strip() for f in fields):
                continue
            if len(fields) <= col:
                raise bertkit_errors.UserError(
                    f"{path}:{rows.line_num}: {len(fields)} fields, the text column {names[col]!r} is field "
                    f"{col + 1} of the header's {len(names)}")
            text = fields[col].strip()
            if text:
                texts.append(text)
    except csv.Error as e:
        raise bertkit_errors.UserError(f"{path}:{rows.line_num}: {e}") from None
    if not texts:
        raise bertkit_errors.UserError(f"{path}: no text in column {names[col]!r} (only a header)")
    return texts


def pack_texts(texts, tokenizer, max_seq_length):
    """Single-segment features (`[CLS] text [SEP]`, as data/finetuning.py packs them): dict of int32 [N, T]."""
    examples = [processors.InputExample(guid=f"text-{i}", text_a=t, example_index=i) for i, t in enumerate(texts)]
    feats = finetuning.convert_examples_to_features(examples, [], max_seq_length, tokenizer)
    return {k: feats[k].astype(np.int32) for k in ("input_ids", "input_mask", "segment_ids")}


def unlabelled_text_dataset(path, tokenizer, max_seq_length, batch_size, seed=None, text_column=None, *,
                            is_training=True, input_context=None):
    """tf.data of feature dicts (`input_ids`, `input_mask`, `segment_ids` int32 [batch, max_seq_length]) from an
    unlabelled text file (see `read_unlabelled_texts`) for self-distillation. Training (default): sharded per
    `input_context`, repeated, shuffled (seeded when `seed` is given) and batched with drop_remainder (the
    per-replica batch size); `is_training=False`: one pass in file order, last batch partial."""
    texts = read_unlabelled_texts(path, text_column)
    features = pack_texts(texts, tokenizer, max_seq_length)
    per_replica = input_context.get_per_replica_batch_size(batch_size) if input_context else int(batch_size)
    d = tf.data.Dataset.from_tensor_slices(features)
    if not is_training:
        return d.batch(per_replica).prefetch(tf.data.AUTOTUNE)
    if input_context is not None and input_context.num_input_pipelines > 1:
        d = d.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    d = d.repeat().shuffle(min(len(texts), 10000), seed=seed)
    return d.batch(per_replica, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
