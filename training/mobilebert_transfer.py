"""MobileBERT progressive knowledge transfer from an IB-BERT teacher (Sun et al. 2020, "MobileBERT", section 3.5).

    plan = stage_plan(num_layers, num_progressive_stages, steps_per_stage, num_train_steps)
    teacher = load_teacher(teacher_config, teacher_checkpoint)           # PretrainingModel, frozen
    copy_from_teacher(teacher, student)                                   # embeddings + MLM and NSP heads
    result = run_progressive(student, teacher, plan, dataset_fn=..., ...)  # what run_pretraining.py runs

The student (a MobileBERT `PretrainingModel`) and the teacher (IB-BERT: the MobileBERT encoder with an inverted
bottleneck, configs/ibbert_large.json) have the same number of layers, the same inter-block width `hidden_size`, the
same embedding width and the same number of heads, so the student's embedding layer and final classifier (the MLM
and NSP heads) are copied from the teacher on a fresh start, and every student layer has a teacher layer to imitate.

Stages (`stage_plan`): layer stages 0..K-1 (K = num_progressive_stages, one per layer by default; with fewer stages
than layers each stage takes the next group of consecutive layers), `steps_per_stage` steps each, then the
pre-training distillation stage to `num_train_steps`.
  * Layer stage k trains the student's layers of group k only: the embeddings and the layers below are frozen (not
    in the trained variables; run in inference mode under stop_gradient), the layers above and the heads unused.
    Loss: feature-map transfer (`feature_map_loss`, MSE between the student's and teacher's layer outputs) plus
    attention transfer (`attention_transfer_loss`, KL(teacher || student) of the attention distributions), summed
    over the group's layers.
  * The final stage trains the whole student (encoder, MLM and NSP heads) on pre-training distillation
    (`pretraining_distillation_loss`): the MLM cross-entropy against alpha * one-hot(label) + (1 - alpha) *
    softmax(teacher logits / temperature), plus the NSP cross-entropy.
Every stage has its own optimizer (a warmup + linear decay schedule over the stage's steps, checkpointed as
`optimizer_stage<k>`), so the stage and the step inside it follow from the checkpoint's global step alone: a killed
run rerun with the same command resumes in the right stage at the right step. TensorBoard scalars carry the stage
(`stage<k>_feature_map_loss`, `stage<k>_attention_loss`, `stage<K>_masked_lm_loss`, ...).
"""
import collections

import keras
import tensorflow as tf

import bertkit_errors
from modeling import build_pretraining_model, checkpoints
from training import optimization
from training import trainer as trainer_lib

Stage = collections.namedtuple("Stage", ["index", "start", "end", "layers"])  # layers: (lo, hi) or None (final)


# ----------------------------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------------------------

def _token_weights(input_mask):
    return tf.cast(input_mask, tf.float32)


def feature_map_loss(teacher_hidden, student_hidden, input_mask):
    """Feature-map transfer: mean over the real tokens of the mean over units of (teacher - student)^2.
    teacher_hidden, student_hidden [B,T,H]; input_mask [B,T] (1 = token)."""
    d = tf.cast(teacher_hidden, tf.float32) - tf.cast(student_hidden, tf.float32)
    per_token = tf.reduce_mean(tf.square(d), axis=-1)
    w = _token_weights(input_mask)
    return tf.reduce_sum(per_token * w) / tf.maximum(tf.reduce_sum(w), 1.0)


def attention_transfer_loss(teacher_scores, student_scores, input_mask):
    """Attention transfer: KL(teacher || student) of the attention distributions over the keys, averaged over the
    heads and the real query tokens. Scores [B,N,T,T] are the softmax inputs before the mask (the encoders'
    `attention_scores`); padded keys are masked out of both distributions."""
    mask = tf.cast(input_mask, tf.float32)
    bias = ((1.0 - mask) * -1e9)[:, tf.newaxis, tf.newaxis, :]
    t_log = tf.nn.log_softmax(tf.cast(teacher_scores, tf.float32) + bias, axis=-1)
    s_log = tf.nn.log_softmax(tf.cast(student_scores, tf.float32) + bias, axis=-1)
    kl = tf.reduce_sum(tf.exp(t_log) * (t_log - s_log) * mask[:, tf.newaxis, tf.newaxis, :], axis=-1)  # [B,N,T]
    per_query = tf.reduce_mean(kl, axis=1)  # over heads -> [B,T]
    return tf.reduce_sum(per_query * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def pretraining_distillation_loss(mlm_logits, teacher_mlm_logits, label_ids, label_weights, alpha=0.5,
                                  temperature=1.0):
    """MLM with a mix of hard and soft labels: per masked position the cross-entropy of the student's distribution
    against alpha * one-hot(label) + (1 - alpha) * softmax(teacher_logits / temperature), weighted by
    `label_weights` and normalised by their sum. Returns (loss, per-position cross-entropy [B,P])."""
    logits = tf.cast(mlm_logits, tf.float32)
    vocab = tf.shape(logits)[-1]
    hard = tf.one_hot(tf.cast(label_ids, tf.int32), vocab, dtype=tf.float32)
    soft = tf.nn.softmax(tf.cast(teacher_mlm_logits, tf.float32) / temperature, axis=-1)
    target = alpha * hard + (1.0 - alpha) * soft
    per_position = -tf.reduce_sum(target * tf.nn.log_softmax(logits, axis=-1), axis=-1)
    w = tf.cast(label_weights, tf.float32)
    return tf.reduce_sum(per_position * w) / (tf.reduce_sum(w) + 1e-5), per_position


# ----------------------------------------------------------------------------------------------------------------
# Stages
# ----------------------------------------------------------------------------------------------------------------

def stage_plan(num_layers, num_progressive_stages, steps_per_stage, num_train_steps):
    """[Stage(index, start, end, layers)]: the layer stages, then the pre-training distillation stage (layers None)
    from num_progressive_stages * steps_per_stage to num_train_steps."""
    k = num_layers if num_progressive_stages is None else int(num_progressive_stages)
    if not 1 <= k <= num_layers:
        raise bertkit_errors.UserError(f"--num_progressive_stages={k}: must be between 1 and the student's "
                                       f"{num_layers} layers")
    if steps_per_stage <= 0:
        raise bertkit_errors.UserError(f"--steps_per_stage={steps_per_stage}: must be positive")
    end_of_layers = k * steps_per_stage
    if num_train_steps <= end_of_layers:
        raise bertkit_errors.UserError(
            f"--num_train_steps={num_train_steps}: must exceed the {k} layer stages of --steps_per_stage="
            f"{steps_per_stage} ({end_of_layers} steps), to leave steps for the pre-training distillation stage")
    bounds = [round(i * num_layers / k) for i in range(k + 1)]
    plan = [Stage(i, i * steps_per_stage, (i + 1) * steps_per_stage, (bounds[i], bounds[i + 1])) for i in range(k)]
    plan.append(Stage(k, end_of_layers, num_train_steps, None))
    return plan


def stage_at(plan, step):
    """The stage that trains step `step` + 1 (a step on a boundary belongs to the next stage); the last stage when
    the run is over."""
    for stage in plan:
        if step < stage.end:
            return stage
    return plan[-1]


def describe(stage):
    if stage.layers is None:
        return f"stage {stage.index}: pre-training distillation, whole student, steps {stage.start}-{stage.end}"
    lo, hi = stage.layers
    layers = f"layer {lo}" if hi == lo + 1 else f"layers {lo}-{hi - 1}"
    frozen = "embeddings" + (f" and layers 0-{lo - 1}" if lo > 1 else " and layer 0" if lo == 1 else "")
    return (f"stage {stage.index}: transfer {layers} (feature map + attention), {frozen} frozen, "
            f"steps {stage.start}-{stage.end}")


def _freeze(model):
    model.trainable = False
    return model


class LayerTransferNetwork(keras.Model):
    """A layer stage: call(features) -> {"feature_map_loss", "attention_loss"} for the student layers lo..hi-1
    against the teacher's; `trainable_variables_fn()` gives only those layers' variables."""

    def __init__(self, student, teacher, layers, name="layer_transfer", **kwargs):
        super().__init__(name=name, **kwargs)
        self.student, self.teacher = student, _freeze(teacher)
        self.lo, self.hi = layers
        self.built = True

    def call(self, features, training=False):
        s_enc, t_enc = self.student.encoder, self.teacher.encoder
        s_h, s_bias = s_enc.embed(features, training=False)
        t_h, t_bias = t_enc.embed(features, training=False)
        s_h = tf.stop_gradient(s_h)
        fmt, att = 0.0, 0.0
        for i in range(self.hi):
            t_h, t_scores = t_enc.run_layer(i, t_h, t_bias, training=False)
            if i < self.lo:  # frozen: inference mode, no gradient
                s_h = tf.stop_gradient(s_enc.run_layer(i, s_h, s_bias, training=False)[0])
                continue
            s_h, s_scores = s_enc.run_layer(i, s_h, s_bias, training=training)
            fmt += feature_map_loss(tf.stop_gradient(t_h), s_h, features["input_mask"])
            att += attention_transfer_loss(tf.stop_gradient(t_scores), s_scores, features["input_mask"])
        return {"feature_map_loss": fmt, "attention_loss": att}

    def trainable_variables_fn(self):
        out = []
        for i in range(self.lo, self.hi):
            out += list(getattr(self.student.encoder, f"layer_{i}").trainable_variables)
        return out


class PretrainingDistillationNetwork(keras.Model):
    """The final stage: call(features) -> student {"mlm_logits", "nsp_logits"} + "teacher_mlm_logits"."""

    def __init__(self, student, teacher, name="pretraining_distillation", **kwargs):
        super().__init__(name=name, **kwargs)
        self.student, self.teacher = student, _freeze(teacher)
        self.built = True

    def call(self, features, training=False):
        out = dict(self.student(features, training=training))
        out["teacher_mlm_logits"] = tf.stop_gradient(self.teacher(features, training=False)["mlm_logits"])
        return out

    def trainable_variables_fn(self):
        seen, out = set(), []
        for v in self.student.trainable_variables:
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
        return out


def layer_stage_loss_fn(stage):
    prefix = f"stage{stage.index}_"

    def loss_fn(features, outputs):
        fmt, att = outputs["feature_map_loss"], outputs["attention_loss"]
        return fmt + att, {prefix + "feature_map_loss": (fmt, None), prefix + "attention_loss": (att, None)}

    return loss_fn, [prefix + "feature_map_loss", prefix + "attention_loss"]


def final_stage_loss_fn(stage, alpha, temperature, sentence_task="next_sentence"):
    prefix = f"stage{stage.index}_"
    names = [prefix + n for n in ("masked_lm_loss", "masked_lm_accuracy", f"{sentence_task}_loss",
                                  f"{sentence_task}_accuracy")]

    def loss_fn(features, outputs):
        label_ids = tf.cast(features["masked_lm_ids"], tf.int32)
        weights = tf.cast(features["masked_lm_weights"], tf.float32)
        mlm_logits = tf.cast(outputs["mlm_logits"], tf.float32)
        mlm_loss, per_position = pretraining_distillation_loss(mlm_logits, outputs["teacher_mlm_logits"],
                                                               label_ids, weights, alpha, temperature)
        correct = tf.cast(tf.equal(tf.argmax(mlm_logits, -1, output_type=tf.int32), label_ids), tf.float32)
        nsp_logits = tf.cast(outputs["nsp_logits"], tf.float32)
        ns_labels = tf.reshape(tf.cast(features["next_sentence_labels"], tf.int32), [-1])
        per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ns_labels, logits=nsp_logits)
        ns_correct = tf.cast(tf.equal(tf.argmax(nsp_logits, -1, output_type=tf.int32), ns_labels), tf.float32)
        metrics = dict(zip(names, [(per_position, weights), (correct, weights), (per_example, None),
                                   (ns_correct, None)]))
        return mlm_loss + tf.reduce_mean(per_example), metrics

    return loss_fn, names


# ----------------------------------------------------------------------------------------------------------------
# Teacher, copying, driver
# ----------------------------------------------------------------------------------------------------------------

def check_pair(student_config, teacher_config, where="--teacher_config_file"):
    """UserError unless the teacher can teach the student layer by layer (same layers, widths, heads)."""
    if teacher_config.model_type != "mobilebert" or student_config.model_type != "mobilebert":
        raise bertkit_errors.UserError(
            f"{where}: --distillation=mobilebert needs a MobileBERT student and an IB-BERT (model_type mobilebert) "
            f"teacher, got {student_config.model_type} and {teacher_config.model_type}")
    for key in ("num_hidden_layers", "hidden_size", "embedding_size", "num_attention_heads", "vocab_size",
                "trigram_input", "type_vocab_size"):
        s, t = getattr(student_config, key), getattr(teacher_config, key)
        if s != t:
            raise bertkit_errors.UserError(f"{where}: {key} is {t} in the teacher but {s} in the student; "
                                           "progressive knowledge transfer needs them equal")


def load_teacher(teacher_config, teacher_checkpoint, flag="teacher_checkpoint"):
    """A frozen teacher PretrainingModel with the encoder and MLM head (and NSP head when present) of
    `teacher_checkpoint` (any format modeling.checkpoints reads). Call inside strategy.scope()."""
    teacher = build_pretraining_model(teacher_config)
    loaded = checkpoints.init_from_checkpoint(teacher.encoder, teacher_checkpoint, mlm_head=teacher.mlm_head,
                                              nsp_head=teacher.nsp_head, flag=flag)
    if "mlm_head" not in loaded:
        raise bertkit_errors.UserError(f"--{flag}={teacher_checkpoint}: no MLM head in the checkpoint ({loaded}); "
                                       "pre-training distillation needs the teacher's masked-LM predictions")
    teacher.has_nsp_head = "nsp_head" in loaded
    return _freeze(teacher)


def copy_from_teacher(teacher, student):
    """Copy the teacher's embedding layer and final classifier (MLM head, and NSP head when the teacher's checkpoint
    had one) into the student. Returns the names of what was copied."""
    pairs = [("embeddings", teacher.encoder.embeddings, student.encoder.embeddings),
             ("mlm_head", teacher.mlm_head, student.mlm_head)]
    if getattr(teacher, "has_nsp_head", True):
        pairs.append(("nsp_head", teacher.nsp_head, student.nsp_head))
    for name, src, dst in pairs:
        sv, dv = list(src.weights), list(dst.weights)
        if [tuple(v.shape) for v in sv] != [tuple(v.shape) for v in dv]:
            raise bertkit_errors.UserError(f"--teacher_checkpoint: the teacher's {name} shapes "
                                           f"{[tuple(v.shape) for v in sv]} differ from the student's "
                                           f"{[tuple(v.shape) for v in dv]}")
        for s, d in zip(sv, dv):
            d.assign(tf.cast(s, d.dtype))
    return [name for name, _, _ in pairs]


def _stage_setup(stage, student, teacher, alpha, temperature, sentence_task):
    if stage.layers is None:
        network = PretrainingDistillationNetwork(student, teacher)
        loss_fn, names = final_stage_loss_fn(stage, alpha, temperature, sentence_task)
    else:
        network = LayerTransferNetwork(student, teacher, stage.layers)
        loss_fn, names = layer_stage_loss_fn(stage)
    return network, loss_fn, names


def build_stage_trainer(stage, student, teacher, *, learning_rate, num_warmup_steps, optimizer="adamw", alpha=0.5,
                        temperature=1.0, sentence_task="next_sentence", gradient_accumulation_steps=1,
                        steps_per_execution=1, jit_compile=False):
    """A compiled TrainerModel for `stage` (call inside strategy.scope()): its network, loss, metric names, the
    stage's trainable variables and a fresh optimizer whose schedule spans the stage's steps."""
    network, loss_fn, names = _stage_setup(stage, student, teacher, alpha, temperature, sentence_task)
    steps = stage.end - stage.start
    warmup = num_warmup_steps if stage.layers is None else min(num_warmup_steps, steps // 10)
    opt = optimization.create_optimizer(learning_rate, steps, min(warmup, steps - 1), optimizer=optimizer,
                                        clipnorm=None)
    trainer = trainer_lib.TrainerModel(network, loss_fn, names, gradient_accumulation_steps=gradient_accumulation_steps,
                                       clip_norm=1.0, trainable_variables_fn=network.trainable_variables_fn,
                                       name=f"trainer_stage{stage.index}")
    trainer.compile(optimizer=opt, steps_per_execution=steps_per_execution, jit_compile=jit_compile)
    return trainer


def checkpoint_step(output_dir):
    """Global step of the newest checkpoint in output_dir (0 when there is none)."""
    latest = tf.train.latest_checkpoint(output_dir)
    if not latest:
        return 0
    return int(tf.train.load_checkpoint(latest).get_tensor("global_step/.ATTRIBUTES/VARIABLE_VALUE"))


def _hand_over(trainer, items, dataset_fn, strategy, output_dir, step, max_checkpoints_to_keep):
    """At a stage boundary: the previous stage's checkpoint at `step` holds its own optimizer (whose slots hang on the
    variables it trained); rewrite the checkpoint at the same step with the weights and this stage's fresh optimizer,
    so that run_training restores this stage's objects exactly (also after a kill at the boundary)."""
    with strategy.scope():
        trainer.build_for(dataset_fn(tf.distribute.InputContext()).element_spec)
    weights = tf.train.Checkpoint(encoder=items["encoder"], mlm_head=items["mlm_head"], nsp_head=items["nsp_head"],
                                  global_step=items["global_step"])
    checkpoints.restore_checked(weights, tf.train.latest_checkpoint(output_dir)).expect_partial()
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(**items), trainer_lib.write_dir_for(output_dir, strategy),
                                         max_to_keep=max_checkpoints_to_keep, step_counter=trainer.global_step)
    trainer_lib.save_checkpoint(manager, step)


def run_progressive(student, teacher, plan, *, dataset_fn, strategy, output_dir, steps_per_checkpoint,
                    examples_per_step, learning_rate, num_warmup_steps, optimizer="adamw", alpha=0.5,
                    temperature=1.0, sentence_task="next_sentence", gradient_accumulation_steps=1,
                    iterations_per_loop=1000, jit_compile=False, max_checkpoints_to_keep=5, log_every_n_steps=None,
                    hparams=None, print_fn=print, stop_after_stage=None):
    """Run the stages of `plan` from the one the newest checkpoint of output_dir is in (a fresh start copies the
    teacher's embeddings and heads into the student first). Checkpoints hold encoder, mlm_head, nsp_head,
    optimizer_stage<k> and global_step. Returns {"global_step", "initial_step", "examples_per_second" (the last
    stage's that measured it), "stages": [(index, run_training result)]}. `stop_after_stage`: stop after that
    stage (tests)."""
    initial = checkpoint_step(output_dir)
    result = {"initial_step": initial, "stages": [], "global_step": initial, "examples_per_second": None}
    fresh = initial == 0 and not tf.train.latest_checkpoint(output_dir)

    def init_fn():
        copied = copy_from_teacher(teacher, student)
        print_fn(f"copied the teacher's {', '.join(copied)} into the student")

    current = stage_at(plan, initial)
    if initial >= plan[-1].end:
        print_fn(f"global step {initial} >= num_train_steps {plan[-1].end}: nothing to train")
        return result
    print_fn(f"progressive knowledge transfer: {len(plan) - 1} layer stages + pre-training distillation; "
             f"{'starting' if fresh else 'resuming'} in stage {current.index} at step {initial}")
    for stage in plan[current.index:]:
        print_fn(describe(stage))
        spe = trainer_lib.steps_per_execution_for(iterations_per_loop, steps_per_checkpoint, stage.end)
        with strategy.scope():
            trainer = build_stage_trainer(
                stage, student, teacher, learning_rate=learning_rate, num_warmup_steps=num_warmup_steps,
                optimizer=optimizer, alpha=alpha, temperature=temperature, sentence_task=sentence_task,
                gradient_accumulation_steps=gradient_accumulation_steps, steps_per_execution=spe,
                jit_compile=jit_compile)
        items = {"encoder": student.encoder, "mlm_head": student.mlm_head, "nsp_head": student.nsp_head,
                 f"optimizer_stage{stage.index}": trainer.optimizer, "global_step": trainer.global_step}
        if stage.start > 0 and checkpoint_step(output_dir) == stage.start:
            _hand_over(trainer, items, dataset_fn, strategy, output_dir, stage.start, max_checkpoints_to_keep)
        res = trainer_lib.run_training(
            trainer, dataset_fn, strategy=strategy, output_dir=output_dir, num_train_steps=stage.end,
            steps_per_checkpoint=steps_per_checkpoint, checkpoint_items=items, examples_per_step=examples_per_step,
            init_fn=init_fn if fresh and stage is plan[current.index] else None,
            max_checkpoints_to_keep=max_checkpoints_to_keep, log_every_n_steps=log_every_n_steps,
            hparams=hparams if stage is plan[current.index] else None, print_fn=print_fn, total_steps=plan[-1].end)
        result["stages"].append((stage.index, res))
        result["global_step"] = res["global_step"]
        result["examples_per_second"] = res["examples_per_second"] or result["examples_per_second"]
        if stop_after_stage is not None and stage.index >= stop_after_stage:
            break
    return result
