"""TinyBERT (Jiao et al. 2020) training pieces on top of `training/distillation.py`.

General distillation (run_pretraining.py --teacher_config_file/--teacher_checkpoint):

    teacher_config, teacher = load_teacher_encoder(config_file, checkpoint)      # inside strategy.scope()
    distill = DistillationLoss(..., fit_dense=modeling.build_fit_dense(student_config, teacher_config.hidden_size))
    net = GeneralDistillationNetwork(pretraining_model, teacher, distill, distill_mlm=False)
    trainer = TrainerModel(net, general_distillation_loss_fn(distill_mlm), general_distillation_metric_names(distill,
                           distill_mlm), trainable_variables_fn=net.student_trainable_variables)

Task distillation (run_classifier.py, two stages: "intermediate" then "prediction", or "both"):

    net = TaskDistillationNetwork(student_classifier, teacher_classifier, distill_loss)
    trainer = TrainerModel(net, task_distillation_loss_fn(distill_loss), task_distillation_metric_names(distill_loss),
                           trainable_variables_fn=net.student_trainable_variables)
    check_teacher_labels(teacher_meta["labels"], processor.get_labels())
    teacher_config, teacher_meta, teacher_classifier = load_teacher_classifier(teacher_dir)   # a run_classifier dir

The teacher always runs with training=False, is frozen (`trainable = False`) and its variables are never in the
trainable set: it is restored from its checkpoint on every start (it is not a checkpoint item of the student's run).

Data augmentation (augment_data.py), TinyBERT's `data_augmentation.py` on a bertkit teacher:

    aug = Augmenter(encoder, mlm_head, tokenizer, max_seq_length=128, candidates=15, batch_size=64)
    candidates = aug.candidates_for(texts)            # per text: (words, {word index: [candidate words]})
    rows = aug.augment_words(words, cands, num_aug=20, replace_prob=0.4, rng=np.random.default_rng(seed))

Single-piece words get candidates from the teacher's masked LM (the word masked in its sentence; the top-M whole-word
predictions other than the word itself); multi-piece words get the M nearest whole-word tokens in the teacher's input
embedding space (cosine, a multi-piece word embedded as the mean of its pieces). All masked copies of all sentences
of a batch go through the model in one forward pass (`batch_size` sequences per call).
"""
import inspect
import os

import keras
import numpy as np
import tensorflow as tf

from bertkit_errors import UserError
from data import finetuning
from modeling import ModelConfig, build_classifier, build_encoder, checkpoints
from tokenization import basic_tokenize
from training import best_checkpoint, checkpointing, distillation


# ----------------------------------------------------------------------------------------------------------------
# Teacher loading
# ----------------------------------------------------------------------------------------------------------------

def load_teacher_encoder(config_file, checkpoint, flag="teacher_checkpoint", config_flag="teacher_config_file"):
    """(config, frozen encoder) for a teacher: `config_file` (any bertkit-readable config: BERT/ALBERT/MobileBERT),
    weights from `checkpoint` (a bertkit checkpoint prefix or model dir) through
    `training.checkpointing.restore_encoder_weights`. Call inside `strategy.scope()`. Errors are one-line UserErrors
    naming `--<flag>` / `--<config_flag>`."""
    if not config_file:
        raise UserError(f"--{config_flag}: required with --{flag}")
    if not checkpoint:
        raise UserError(f"--{flag}: required with --{config_flag}")
    if not os.path.isfile(config_file):
        raise UserError(f"--{config_flag}={config_file}: no such file")
    config = ModelConfig.from_json_file(config_file)
    encoder = build_encoder(config, name="teacher_encoder")
    restore_teacher_weights(encoder, checkpoint, flag=flag)
    encoder.trainable = False
    return config, encoder


def restore_teacher_weights(encoder, checkpoint, flag="teacher_checkpoint", name="encoder"):
    """restore_encoder_weights with the error messages naming --<flag> instead of --init_checkpoint."""
    restore = checkpointing.restore_encoder_weights
    kwargs = {}
    params = inspect.signature(restore).parameters
    if "flag" in params:
        kwargs["flag"] = flag
    if name != "encoder":
        kwargs["name"] = name
    try:
        return restore(encoder, checkpoint, **kwargs)
    except UserError as e:
        msg = str(e)
        for old in ("--init_checkpoint=", "--init_checkpoint:"):
            if msg.startswith(old):
                msg = f"--{flag}{old[len('--init_checkpoint'):]}" + msg[len(old):]
                break
        raise UserError(msg) from None


def load_teacher_classifier(model_dir, flag="teacher_checkpoint"):
    """(config, task_meta, frozen classifier) for a task-distillation teacher: a run_classifier.py output directory
    holding bert_config.json, task_meta.json and checkpoints; the weights (`encoder` + `classifier_head`) come from
    its best/ checkpoint when it has one, else its latest. Call inside `strategy.scope()`. Errors are one-line
    UserErrors naming `--<flag>`."""
    where = f"--{flag}={model_dir}"
    if not model_dir or not os.path.isdir(model_dir):
        raise UserError(f"{where}: not a directory (give the output_dir of run_classifier.py for the teacher)")
    config_file = os.path.join(model_dir, "bert_config.json")
    if not os.path.isfile(config_file):
        raise UserError(f"{where}: no bert_config.json (not a run_classifier.py output directory)")
    meta = finetuning.read_task_meta(model_dir)
    if meta is None:
        raise UserError(f"{where}: no task_meta.json (not a run_classifier.py output directory)")
    prefix = best_checkpoint.BestCheckpoint(model_dir, None).prefix() or tf.train.latest_checkpoint(model_dir)
    if not prefix:
        raise UserError(f"{where}: no checkpoint (fine-tune the teacher first)")
    names = [name for name, _ in tf.train.list_variables(prefix)]
    if not any(n.startswith("classifier_head/") for n in names):
        raise UserError(f"{where}: checkpoint {prefix} has no classifier_head (not a fine-tuned classifier)")
    config = ModelConfig.from_json_file(config_file)
    num_labels = 1 if meta.get("is_regression") else len(meta.get("labels") or [])
    model = build_classifier(config, num_labels)
    try:
        checkpoints.read_objects(prefix, encoder=model.encoder, classifier_head=model.head)
    except (AssertionError, ValueError) as e:
        raise UserError(f"{where}: checkpoint {prefix} does not match its bert_config.json / task_meta.json "
                        f"({str(e).splitlines()[0][:200]})") from None
    model.checkpoint_prefix = prefix
    return config, meta, _freeze(model)


def _freeze(model):
    model.trainable = False
    return model


# ----------------------------------------------------------------------------------------------------------------
# General distillation (pre-training data)
# ----------------------------------------------------------------------------------------------------------------

class GeneralDistillationNetwork(keras.Model):
    """Student pre-training model + frozen teacher encoder + DistillationLoss (stage "intermediate").

    call(features, training) -> dict: the distillation loss terms (embedding_loss, hidden_loss, [attention_loss],
    total_loss) and, with distill_mlm, the student's `mlm_logits` [B, P, V] at the stored masked positions.
    """

    def __init__(self, student, teacher_encoder, distill_loss, distill_mlm=False, name="general_distillation",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        if distill_loss.stage != "intermediate":
            raise ValueError("general distillation uses the 'intermediate' stage")
        self.student = student
        self.teacher = _freeze(teacher_encoder)
        self.distill_loss = distill_loss
        self.distill_mlm = bool(distill_mlm)
        self.built = True

    def call(self, features, training=False):
        need_att = self.distill_loss.attention_loss is not None
        s = self.student.encoder(features, training=training, output_hidden_states=True,
                                 output_attentions=need_att)
        t = self.teacher(features, training=False, output_hidden_states=True, output_attentions=need_att)
        out = dict(self.distill_loss.compute(s, t, features["input_mask"]))
        if self.distill_mlm:
            out["mlm_logits"] = self.student.mlm_head(s["sequence_output"], features["masked_lm_positions"])
        return out

    def student_trainable_variables(self):
        """Student encoder + fit_dense (+ the MLM head with distill_mlm); never the teacher's."""
        variables = list(self.student.encoder.trainable_variables) + list(self.distill_loss.trainable_variables)
        if self.distill_mlm:
            variables += list(self.student.mlm_head.trainable_variables)
        seen, out = set(), []
        for v in variables:  # the MLM head ties to the word embeddings: keep each variable once
            key = id(v)
            if key not in seen:
                seen.add(key)
                out.append(v)
        return out


def _loss_term_names(distill_loss):
    names = []
    if distill_loss.stage in ("intermediate", "both"):
        names += ["embedding_loss", "hidden_loss"]
        if distill_loss.attention_loss is not None:
            names.append("attention_loss")
    if distill_loss.stage in ("prediction", "both"):
        names.append("prediction_loss")
        if distill_loss.hard_label_weight > 0:
            names.append("hard_label_loss")
    return names


def general_distillation_metric_names(distill_loss, distill_mlm=False):
    names = _loss_term_names(distill_loss)
    if distill_mlm:
        names += ["masked_lm_loss", "masked_lm_accuracy"]
    return names


def general_distillation_loss_fn(distill_mlm=False):
    """loss_fn for TrainerModel over GeneralDistillationNetwork outputs: total distillation loss (+ the masked LM
    loss of the original objective with distill_mlm). Metrics: every loss term (+ masked_lm_loss/accuracy)."""

    def loss_fn(features, outputs):
        terms = {k: v for k, v in outputs.items() if k not in ("total_loss", "mlm_logits")}
        metrics = {k: (v, None) for k, v in terms.items()}
        loss = tf.cast(outputs["total_loss"], tf.float32)
        if distill_mlm:
            logits = tf.cast(outputs["mlm_logits"], tf.float32)
            label_ids = tf.cast(features["masked_lm_ids"], tf.int32)
            weights = tf.cast(features["masked_lm_weights"], tf.float32)
            per_position = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=label_ids, logits=logits)
            mlm_loss = tf.reduce_sum(per_position * weights) / (tf.reduce_sum(weights) + 1e-5)
            correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), label_ids), tf.float32)
            metrics["masked_lm_loss"] = (per_position, weights)
            metrics["masked_lm_accuracy"] = (correct, weights)
            loss = loss + mlm_loss
        return loss, metrics

    return loss_fn


# ----------------------------------------------------------------------------------------------------------------
# Task distillation (fine-tuning data)
# ----------------------------------------------------------------------------------------------------------------

_ENCODER_KEYS = ("input_ids", "input_mask", "segment_ids")


class TaskDistillationNetwork(keras.Model):
    """Student classifier learning from a frozen teacher classifier (both `modeling.Classifier`: .encoder, .head).

    call(features, training) -> dict with the student's logits under "logits" plus the distillation loss terms of
    `distill_loss.stage` and "total_loss". Intermediate stages ask the encoders for hidden states (and attention
    scores when the attention loss is on); prediction stages run the teacher's head too. The hard-label loss
    (`hard_label_weight` > 0) reads `features["label_ids"]`.
    """

    def __init__(self, student, teacher, distill_loss, name="task_distillation", **kwargs):
        super().__init__(name=name, **kwargs)
        self.student = student
        self.teacher = _freeze(teacher)
        self.distill_loss = distill_loss
        self.built = True

    def call(self, features, training=False):
        stage = self.distill_loss.stage
        inter = stage in ("intermediate", "both")
        pred = stage in ("prediction", "both")
        att = inter and self.distill_loss.attention_loss is not None
        inputs = {k: features[k] for k in _ENCODER_KEYS if k in features}
        s = self.student.encoder(inputs, training=training, output_hidden_states=inter, output_attentions=att)
        logits = self.student.head(s["pooled_output"], training=training)
        t = self.teacher.encoder(inputs, training=False, output_hidden_states=inter, output_attentions=att)
        teacher_logits = self.teacher.head(t["pooled_output"], training=False) if pred else None
        labels = features.get("label_ids") if (pred and self.distill_loss.hard_label_weight > 0) else None
        if pred and self.distill_loss.hard_label_weight > 0 and labels is None:
            raise ValueError("hard_label_weight > 0 needs label_ids in the features")
        losses = self.distill_loss.compute(
            s if inter else None, t if inter else None, features["input_mask"] if inter else None,
            student_logits=logits if pred else None, teacher_logits=teacher_logits, labels=labels)
        return {"logits": logits, **losses}

    def student_trainable_variables(self):
        """Student encoder + head + fit_dense; never the teacher's."""
        return (list(self.student.trainable_variables) + list(self.distill_loss.trainable_variables))


def task_distillation_metric_names(stage_or_loss, attention_loss=True, hard_label=False):
    """The metric names `task_distillation_loss_fn` reports: the loss terms of the stage. Give the DistillationLoss
    (exact: it knows whether the attention / hard-label terms are on) or a stage name plus those two switches."""
    if isinstance(stage_or_loss, distillation.DistillationLoss):
        return _loss_term_names(stage_or_loss)
    stage = stage_or_loss
    if stage not in distillation.STAGES:
        raise UserError(f"--distill_stage: unknown stage {stage!r} (expected one of {', '.join(distillation.STAGES)})")
    names = []
    if stage in ("intermediate", "both"):
        names += ["embedding_loss", "hidden_loss"] + (["attention_loss"] if attention_loss else [])
    if stage in ("prediction", "both"):
        names += ["prediction_loss"] + (["hard_label_loss"] if hard_label else [])
    return names


def task_distillation_loss_fn(distill_loss):
    """loss_fn for TrainerModel: (features, outputs) -> (outputs["total_loss"], {term: (value, None)}).

    The loss terms are batch means computed inside the network (as TinyBERT's reference code); padded
    (`is_real_example` = 0) rows only occur in eval/predict batches, where this loss is informational."""
    names = _loss_term_names(distill_loss)

    def loss_fn(features, outputs):
        del features
        return tf.cast(outputs["total_loss"], tf.float32), {k: (outputs[k], None) for k in names}

    return loss_fn


def check_teacher_labels(teacher_meta_labels, student_labels, where="--teacher_checkpoint"):
    """UserError when the teacher's label list (its task_meta.json) differs from the task's, in content or order:
    the prediction loss compares logits column by column."""
    t = [str(x) for x in (teacher_meta_labels or [])]
    s = [str(x) for x in (student_labels or [])]
    if t != s:
        if sorted(t) == sorted(s):
            what = "the same labels in another order"
        else:
            what = "different labels"
        raise UserError(f"{where}: the teacher was trained with {what} ({', '.join(t) or 'none'}) than this task "
                        f"({', '.join(s) or 'none'}); task distillation needs the same labels in the same order")


# ----------------------------------------------------------------------------------------------------------------
# Data augmentation
# ----------------------------------------------------------------------------------------------------------------

def _is_whole_word(token):
    return bool(token) and not token.startswith("##") and not (token.startswith("[") and token.endswith("]")) \
        and any(c.isalnum() for c in token)


class Augmenter:
    """Candidate generation and sampling for TinyBERT's data augmentation (see the module docstring).

    encoder / mlm_head: a teacher with its masked-LM head (mlm_head(sequence_output, positions) -> logits [B,P,V]).
    tokenizer: a tokenization.FullTokenizer of the teacher's vocabulary. `calls` counts model forward passes.
    """

    def __init__(self, encoder, mlm_head, tokenizer, max_seq_length=128, candidates=15, batch_size=64):
        if max_seq_length < 3:
            raise UserError(f"--max_seq_length={max_seq_length}: must be at least 3")
        if candidates <= 0:
            raise UserError(f"--candidates={candidates}: must be positive")
        if batch_size <= 0:
            raise UserError(f"--batch_size={batch_size}: must be positive")
        self.encoder, self.mlm_head, self.tokenizer = encoder, mlm_head, tokenizer
        self.max_seq_length, self.m, self.batch_size = int(max_seq_length), int(candidates), int(batch_size)
        vocab = tokenizer.vocab
        self.inv = {i: t for t, i in vocab.items()}
        self.cls, self.sep, self.mask = vocab["[CLS]"], vocab["[SEP]"], vocab["[MASK]"]
        self.unk = vocab["[UNK]"]
        emb_vocab = int(encoder.word_embeddings.shape[0])
        whole = np.zeros([emb_vocab], bool)
        for t, i in vocab.items():
            if i < emb_vocab and _is_whole_word(t):
                whole[i] = True
        if not whole.any():
            raise UserError("vocabulary: no whole-word tokens to use as candidates")
        self.whole = whole
        self._logit_bias = tf.constant(np.where(whole, 0.0, -1e9).astype(np.float32))
        self._k = int(min(self.m + 1, whole.sum()))
        self._emb_unit = None
        self._near_cache = {}
        self.calls = 0
        self._mlm_fn = tf.function(self._mlm_topk, reduce_retracing=True)

    # ---- model side ----
    def _mlm_topk(self, ids, mask, positions):
        out = self.encoder({"input_ids": ids, "input_mask": mask, "segment_ids": tf.zeros_like(ids)}, training=False)
        logits = self.mlm_head(out["sequence_output"], positions)[:, 0, :]  # [B, V]
        logits = tf.cast(logits, tf.float32) + self._logit_bias
        return tf.math.top_k(logits, k=self._k).indices

    def _embedding_unit(self):
        if self._emb_unit is None:
            e = np.asarray(tf.cast(self.encoder.word_embeddings, tf.float32).numpy())
            self._emb_raw = e
            self._emb_unit = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        return self._emb_unit

    def nearest_words(self, piece_ids, exclude=()):
        """The M whole-word tokens nearest (cosine) to the mean embedding of `piece_ids`."""
        key = tuple(int(i) for i in piece_ids)
        if key in self._near_cache:
            return self._near_cache[key]
        unit = self._embedding_unit()
        q = self._emb_raw[list(key)].mean(0)
        q = q / max(np.linalg.norm(q), 1e-12)
        sims = unit @ q
        sims[~self.whole] = -np.inf
        for i in key:
            sims[i] = -np.inf
        order = np.argsort(-sims, kind="stable")[: self.m + len(exclude)]
        words = [self.inv[int(i)] for i in order if np.isfinite(sims[i]) and self.inv[int(i)] not in exclude]
        self._near_cache[key] = words[: self.m]
        return self._near_cache[key]

    def _window(self, pieces, start, length):
        """A window of at most max_seq_length - 2 pieces containing [start, start + length)."""
        room = self.max_seq_length - 2
        if len(pieces) <= room:
            return 0, len(pieces)
        lo = max(0, min(start - (room - length) // 2, len(pieces) - room))
        return lo, lo + room

    def candidates_for(self, texts, progress=None):
        """texts -> list of (words, {word index: [candidate words]}) (words = the basic tokenizer's words)."""
        results, jobs = [], []  # job: (text index, word index, ids [T], mask position, word)
        for ti, text in enumerate(texts):
            words = basic_tokenize(text, self.tokenizer.do_lower_case)
            piece_lists = self.tokenizer.tokenize_batch(words) if words else []
            flat, starts = [], []
            for pl in piece_lists:
                starts.append(len(flat))
                flat.extend(pl)
            ids = self.tokenizer.convert_tokens_to_ids(flat)
            cands = {}
            for wi, (word, pl) in enumerate(zip(words, piece_lists)):
                if not any(c.isalnum() for c in word) or not pl:
                    continue
                if len(pl) == 1:
                    lo, hi = self._window(ids, starts[wi], 1)
                    seq = [self.cls] + ids[lo:hi] + [self.sep]
                    pos = starts[wi] - lo + 1
                    seq[pos] = self.mask
                    jobs.append((ti, wi, seq, pos, word))
                else:
                    near = self.nearest_words(self.tokenizer.convert_tokens_to_ids(pl), exclude=(word,))
                    if near:
                        cands[wi] = near
            results.append((words, cands))
        for b in range(0, len(jobs), self.batch_size):
            chunk = jobs[b:b + self.batch_size]
            width = max(len(j[2]) for j in chunk)
            width = min(self.max_seq_length, -(-width // 16) * 16)  # few distinct shapes: few retracings
            ids = np.zeros([len(chunk), width], np.int32)
            mask = np.zeros([len(chunk), width], np.int32)
            for r, job in enumerate(chunk):
                ids[r, :len(job[2])] = job[2]
                mask[r, :len(job[2])] = 1
            positions = np.asarray([[j[3]] for j in chunk], np.int32)
            top = self._mlm_fn(tf.constant(ids), tf.constant(mask), tf.constant(positions)).numpy()
            self.calls += 1
            for (ti, wi, _, _, word), row in zip(chunk, top):
                words = [self.inv[int(i)] for i in row if self.inv[int(i)] != word][: self.m]
                if words:
                    results[ti][1][wi] = words
            if progress is not None:
                progress(len(chunk))
        return results

    @staticmethod
    def augment_words(words, candidates, num_aug, replace_prob, rng):
        """num_aug texts: each word with candidates replaced with probability replace_prob by a random candidate
        (TinyBERT's sampling), words joined by single spaces."""
        out = []
        order = sorted(candidates)
        for _ in range(int(num_aug)):
            new = list(words)
            for wi in order:
                cands = candidates[wi]
                choice = cands[int(rng.integers(len(cands)))]
                if rng.random() < replace_prob:
                    new[wi] = choice
            out.append(" ".join(new))
        return out


__all__ = [
    "load_teacher_encoder", "restore_teacher_weights", "GeneralDistillationNetwork",
    "general_distillation_loss_fn", "general_distillation_metric_names", "TaskDistillationNetwork",
    "task_distillation_loss_fn", "task_distillation_metric_names", "check_teacher_labels", "Augmenter",
    "load_teacher_classifier",
]
