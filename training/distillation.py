"""TinyBERT distillation losses (Jiao et al. 2020, "TinyBERT: Distilling BERT for Natural Language Understanding").

Inputs are the encoder outputs of DESIGN.md, asked for with `output_hidden_states=True, output_attentions=True`:
`hidden_states` (L + 1 tensors [B, T, H], the embedding output first) and `attention_scores` (L tensors
[B, heads, T, T], raw scores before softmax and before the padding mask is added).

Layer mapping (`LayerMapping`)
    `attention[i]` is the teacher layer (0-based) whose attention student layer i (0-based) learns;
    `hidden[j]` is the teacher hidden-state index that student hidden state j (0 = embeddings, j = 1..S) learns.
    Uniform (the paper's g(m) = m * k with k = T / S): attention[i] = i * k + k - 1, hidden[j] = j * k.
    An explicit map "s:t,..." (`--layer_mapping`) names, for every student layer s, a teacher layer t; then
    attention[s] = t and hidden[s + 1] = t + 1 (hidden[0] = 0: embeddings to embeddings). The uniform map written
    this way for 12 -> 4 is "0:2,1:5,2:8,3:11".

Loss terms (all float32 scalars; teacher tensors are wrapped in stop_gradient)
    embedding_loss  MSE(fit_dense(student hidden_states[0]), teacher hidden_states[0])
    hidden_loss     sum over j = 1..S of MSE(fit_dense(student hidden_states[j]), teacher hidden_states[hidden[j]])
    attention_loss  sum over i of the attention loss between student scores i and teacher scores attention[i]:
                    "mse" (default, the paper's code): MSE over all [B, heads, T, T] elements after setting the
                    scores of padded *key* positions (input_mask == 0) to 0 on both sides. This is what the
                    reference code's `torch.where(att <= -1e2, 0, att)` does to its mask-added scores; here the
                    scores come without the mask, so the mask is applied directly. Padded query rows are kept, as
                    in the reference.
                    "kl": KL(teacher || student) of the masked softmax distributions over keys, summed over keys
                    and averaged over valid query positions, heads and examples.
    prediction_loss soft cross-entropy -(softmax(t / T) * log_softmax(s / T)).sum(-1).mean() (no T^2 factor, as the
                    reference code); MSE(student, teacher) for regression (num_labels = 1).
    hard_label_loss optional, weight `hard_label_weight`: sparse cross-entropy with the gold labels (MSE for
                    regression).
    total_loss      weighted sum of the terms present.
MSEs are means over all elements (padding included, as the reference code) unless `mask_hidden_padding=True`, which
averages the embedding / hidden MSE over non-padding positions only.

Widths: `fit_dense` (a Dense from the student width to the teacher width, named `fit_dense` for the checkpoint)
lets the teacher have any hidden size; one projection is shared by all layers, as in the paper.
Heads: the attention loss needs equal head counts. With `attention_heads="match"` (default) different counts raise
a UserError; `attention_heads="mean"` averages the scores over heads on both sides first (a coarser signal that
works for any pair of head counts).
"""
import dataclasses

import keras
import tensorflow as tf

from bertkit_errors import UserError

STAGES = ("intermediate", "prediction", "both")
_FLAG = "--layer_mapping"


@dataclasses.dataclass(frozen=True)
class LayerMapping:
    attention: tuple  # len S: student layer i -> teacher layer
    hidden: tuple  # len S + 1: student hidden state j -> teacher hidden state (0 = embeddings)

    @property
    def num_student_layers(self):
        return len(self.attention)


def uniform_layer_mapping(num_student_layers, num_teacher_layers):
    """The paper's uniform strategy; UserError (naming --layer_mapping) when T is not a multiple of S."""
    s, t = int(num_student_layers), int(num_teacher_layers)
    if s <= 0 or t <= 0:
        raise UserError(f"{_FLAG}: layer counts must be positive (student {s}, teacher {t})")
    if t % s:
        raise UserError(
            f"{_FLAG}: the teacher's {t} layers are not a multiple of the student's {s}; give an explicit mapping "
            f"'student:teacher,...' (e.g. {_example_spec(s, t)})"
        )
    k = t // s
    return LayerMapping(attention=tuple(i * k + k - 1 for i in range(s)), hidden=tuple(j * k for j in range(s + 1)))


def _example_spec(s, t):
    return ",".join(f"{i}:{round((i + 1) * t / s) - 1}" for i in range(s))


def parse_layer_mapping(spec, num_student_layers, num_teacher_layers):
    """"0:2,1:5,2:8,3:11" -> LayerMapping. None, "" or "uniform" -> uniform_layer_mapping. Every student layer must
    appear exactly once and every teacher layer must exist; bad specs raise UserError naming --layer_mapping."""
    if spec is None or str(spec).strip().lower() in ("", "uniform"):
        return uniform_layer_mapping(num_student_layers, num_teacher_layers)
    s, t = int(num_student_layers), int(num_teacher_layers)
    pairs = {}
    for item in str(spec).split(","):
        item = item.strip()
        if not item:
            continue
        parts = item.split(":")
        if len(parts) != 2:
            raise UserError(f"{_FLAG}: {item!r} is not 'student_layer:teacher_layer'")
        try:
            si, ti = int(parts[0]), int(parts[1])
        except ValueError:
            raise UserError(f"{_FLAG}: {item!r} is not 'student_layer:teacher_layer' with integer layers") from None
        if not 0 <= si < s:
            raise UserError(f"{_FLAG}: student layer {si} does not exist (the student has layers 0..{s - 1})")
        if not 0 <= ti < t:
            raise UserError(f"{_FLAG}: teacher layer {ti} does not exist (the teacher has layers 0..{t - 1})")
        if si in pairs:
            raise UserError(f"{_FLAG}: student layer {si} is mapped twice")
        pairs[si] = ti
    missing = [i for i in range(s) if i not in pairs]
    if missing:
        raise UserError(f"{_FLAG}: student layers {missing} have no teacher layer (every student layer needs one)")
    attention = tuple(pairs[i] for i in range(s))
    return LayerMapping(attention=attention, hidden=(0,) + tuple(a + 1 for a in attention))


# --------------------------------------------------------------------------------------------------------------------
# Individual losses


def _f32(x):
    return tf.cast(x, tf.float32)


def hidden_mse(student, teacher, input_mask=None):
    """Mean squared error of [B, T, H] tensors; with `input_mask` [B, T], the mean over non-padding positions."""
    student, teacher = _f32(student), tf.stop_gradient(_f32(teacher))
    sq = tf.square(student - teacher)
    if input_mask is None:
        return tf.reduce_mean(sq)
    m = _f32(input_mask)[:, :, None]
    denom = tf.reduce_sum(m) * tf.cast(tf.shape(sq)[-1], tf.float32)
    return tf.reduce_sum(sq * m) / tf.maximum(denom, 1.0)


def _match_heads(student_scores, teacher_scores, attention_heads):
    hs, ht = student_scores.shape[1], teacher_scores.shape[1]
    if attention_heads == "mean":
        return (tf.reduce_mean(student_scores, axis=1, keepdims=True),
                tf.reduce_mean(teacher_scores, axis=1, keepdims=True))
    if hs is not None and ht is not None and hs != ht:
        raise UserError(
            f"distillation: the student has {hs} attention heads and the teacher {ht}; the attention loss needs equal "
            "head counts (use attention_heads='mean' to average the scores over heads, or turn the attention loss "
            "off)"
        )
    return student_scores, teacher_scores


def attention_mse(student_scores, teacher_scores, input_mask, attention_heads="match"):
    """TinyBERT attention loss: MSE over [B, heads, T, T] with padded key positions zeroed on both sides."""
    s, t = _match_heads(_f32(student_scores), tf.stop_gradient(_f32(teacher_scores)), attention_heads)
    keep = _f32(input_mask)[:, None, None, :]
    return tf.reduce_mean(tf.square(s * keep - t * keep))


def attention_kl(student_scores, teacher_scores, input_mask, attention_heads="match"):
    """KL(teacher || student) of the attention distributions over (non-padding) keys, summed over keys and averaged
    over non-padding query positions, heads and examples."""
    s, t = _match_heads(_f32(student_scores), tf.stop_gradient(_f32(teacher_scores)), attention_heads)
    mask = _f32(input_mask)
    bias = (1.0 - mask)[:, None, None, :] * -1e9
    log_p_t = tf.nn.log_softmax(t + bias, axis=-1)
    log_p_s = tf.nn.log_softmax(s + bias, axis=-1)
    p_t = tf.exp(log_p_t)
    kl = tf.reduce_sum(p_t * (log_p_t - log_p_s) * mask[:, None, None, :], axis=-1)  # [B, h, Tq]
    qmask = tf.broadcast_to(mask[:, None, :], tf.shape(kl))
    return tf.reduce_sum(kl * qmask) / tf.maximum(tf.reduce_sum(qmask), 1.0)


def soft_cross_entropy(student_logits, teacher_logits, temperature=1.0):
    """-(softmax(teacher / T) * log_softmax(student / T)).sum(-1).mean()"""
    s = _f32(student_logits) / temperature
    t = tf.stop_gradient(_f32(teacher_logits)) / temperature
    return tf.reduce_mean(-tf.reduce_sum(tf.nn.softmax(t, axis=-1) * tf.nn.log_softmax(s, axis=-1), axis=-1))


def prediction_loss(student_logits, teacher_logits, temperature=1.0, is_regression=False):
    if is_regression:
        return tf.reduce_mean(tf.square(_f32(student_logits) - tf.stop_gradient(_f32(teacher_logits))))
    return soft_cross_entropy(student_logits, teacher_logits, temperature)


def hard_label_loss(student_logits, labels, is_regression=False):
    """Cross-entropy with integer gold labels [B] (or [B, 1]); MSE with float targets for regression."""
    logits = _f32(student_logits)
    if is_regression:
        return tf.reduce_mean(tf.square(tf.reshape(logits, [-1]) - tf.reshape(_f32(labels), [-1])))
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


# --------------------------------------------------------------------------------------------------------------------
# The combined loss


class DistillationLoss(keras.layers.Layer):
    """All TinyBERT loss terms for one stage, owning the `fit_dense` projection (student width -> teacher width).

        distill = DistillationLoss(student_hidden_size=312, teacher_hidden_size=768, num_student_layers=4,
                                   num_teacher_layers=12, stage="intermediate")
        s = student(features, output_hidden_states=True, output_attentions=True)
        t = teacher(features, training=False, output_hidden_states=True, output_attentions=True)
        losses = distill.compute(s, t, features["input_mask"])    # dict, losses["total_loss"] to minimise
        ckpt = tf.train.Checkpoint(encoder=student, fit_dense=distill.fit_dense, ...)
        variables = student.trainable_variables + distill.trainable_variables

    stage: "intermediate" (embedding + hidden + attention), "prediction" (soft CE [+ hard labels]) or "both".
    layer_mapping: None / "uniform", a "s:t,..." string or a LayerMapping.
    use_projection: None -> a projection only when the widths differ; True forces one.
    fit_dense: an existing projection layer to use instead (e.g. `modeling.build_fit_dense(...)`, or one restored
    from a checkpoint); called as fit_dense(h [B, T, Hs]) -> [B, T, Ht].
    """

    def __init__(
        self,
        student_hidden_size,
        teacher_hidden_size,
        num_student_layers,
        num_teacher_layers,
        layer_mapping=None,
        stage="intermediate",
        attention_loss="mse",
        attention_heads="match",
        temperature=1.0,
        hard_label_weight=0.0,
        is_regression=False,
        mask_hidden_padding=False,
        use_projection=None,
        fit_dense=None,
        embedding_weight=1.0,
        hidden_weight=1.0,
        attention_weight=1.0,
        prediction_weight=1.0,
        name="distillation_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if stage not in STAGES:
            raise UserError(f"--distill_stage: unknown stage {stage!r} (expected one of {', '.join(STAGES)})")
        if attention_loss not in ("mse", "kl", None, "none"):
            raise UserError(f"--attention_loss: unknown attention loss {attention_loss!r} (expected mse, kl or none)")
        if attention_heads not in ("match", "mean"):
            raise ValueError(f"attention_heads must be 'match' or 'mean', got {attention_heads!r}")
        if temperature <= 0:
            raise UserError(f"--temperature: must be positive, got {temperature}")
        self.stage = stage
        self.attention_loss = None if attention_loss in (None, "none") else attention_loss
        self.attention_heads = attention_heads
        self.temperature = float(temperature)
        self.hard_label_weight = float(hard_label_weight)
        self.is_regression = bool(is_regression)
        self.mask_hidden_padding = bool(mask_hidden_padding)
        self.weights_ = dict(embedding_loss=float(embedding_weight), hidden_loss=float(hidden_weight),
                             attention_loss=float(attention_weight), prediction_loss=float(prediction_weight),
                             hard_label_loss=self.hard_label_weight)
        self.num_student_layers = int(num_student_layers)
        self.num_teacher_layers = int(num_teacher_layers)
        if isinstance(layer_mapping, LayerMapping):
            if (layer_mapping.num_student_layers != self.num_student_layers
                    or max(layer_mapping.attention) >= self.num_teacher_layers):
                raise UserError(f"{_FLAG}: mapping {layer_mapping} does not fit {num_student_layers} student / "
                                f"{num_teacher_layers} teacher layers")
            self.layer_mapping = layer_mapping
        elif stage == "prediction" and layer_mapping is None:
            self.layer_mapping = None  # not needed; no divisibility requirement
        else:
            self.layer_mapping = parse_layer_mapping(layer_mapping, num_student_layers, num_teacher_layers)
        if fit_dense is not None:  # e.g. modeling.build_fit_dense(student_config, teacher_hidden_size)
            self.fit_dense = fit_dense
        else:
            if use_projection is None:
                use_projection = int(student_hidden_size) != int(teacher_hidden_size)
            self.fit_dense = None
            if use_projection:
                self.fit_dense = keras.layers.Dense(int(teacher_hidden_size), name="fit_dense")
                self.fit_dense.build((None, None, int(student_hidden_size)))

    def _project(self, h):
        return self.fit_dense(h) if self.fit_dense is not None else h

    def intermediate_losses(self, student_outputs, teacher_outputs, input_mask):
        mapping = self.layer_mapping
        s_hidden, t_hidden = list(student_outputs["hidden_states"]), list(teacher_outputs["hidden_states"])
        if len(s_hidden) != self.num_student_layers + 1 or len(t_hidden) != self.num_teacher_layers + 1:
            raise ValueError(
                f"expected {self.num_student_layers + 1} student and {self.num_teacher_layers + 1} teacher hidden "
                f"states, got {len(s_hidden)} and {len(t_hidden)} (call the encoders with output_hidden_states=True)"
            )
        hmask = input_mask if self.mask_hidden_padding else None
        out = {"embedding_loss": hidden_mse(self._project(s_hidden[0]), t_hidden[mapping.hidden[0]], hmask)}
        out["hidden_loss"] = tf.add_n([
            hidden_mse(self._project(s_hidden[j]), t_hidden[mapping.hidden[j]], hmask)
            for j in range(1, self.num_student_layers + 1)
        ])
        if self.attention_loss is not None:
            s_att, t_att = list(student_outputs["attention_scores"]), list(teacher_outputs["attention_scores"])
            if len(s_att) != self.num_student_layers or len(t_att) != self.num_teacher_layers:
                raise ValueError(
                    f"expected {self.num_student_layers} student and {self.num_teacher_layers} teacher attention "
                    f"score tensors, got {len(s_att)} and {len(t_att)} (call with output_attentions=True)"
                )
            fn = attention_mse if self.attention_loss == "mse" else attention_kl
            out["attention_loss"] = tf.add_n([
                fn(s_att[i], t_att[mapping.attention[i]], input_mask, self.attention_heads)
                for i in range(self.num_student_layers)
            ])
        return out

    def prediction_losses(self, student_logits, teacher_logits, labels=None):
        if student_logits is None or teacher_logits is None:
            raise ValueError(f"stage {self.stage!r} needs student_logits and teacher_logits")
        out = {"prediction_loss": prediction_loss(student_logits, teacher_logits, self.temperature,
                                                  self.is_regression)}
        if self.hard_label_weight > 0:
            if labels is None:
                raise ValueError("hard_label_weight > 0 needs labels")
            out["hard_label_loss"] = hard_label_loss(student_logits, labels, self.is_regression)
        return out

    def compute(self, student_outputs=None, teacher_outputs=None, input_mask=None, student_logits=None,
                teacher_logits=None, labels=None):
        """The loss terms of this stage plus `total_loss` (their weighted sum)."""
        losses = {}
        if self.stage in ("intermediate", "both"):
            if input_mask is None:
                raise ValueError("the intermediate losses need input_mask")
            losses.update(self.intermediate_losses(student_outputs, teacher_outputs, input_mask))
        if self.stage in ("prediction", "both"):
            losses.update(self.prediction_losses(student_logits, teacher_logits, labels))
        losses["total_loss"] = tf.add_n([self.weights_[k] * v for k, v in losses.items()])
        return losses

    def call(self, *args, **kwargs):
        return self.compute(*args, **kwargs)
