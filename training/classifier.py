"""Fine-tuning logic behind run_classifier.py: what is trained and checkpointed (the model setups), the
--init_checkpoint pieces a setup restores, and per-epoch training with best-checkpoint keeping.

    setup = build_classifier_setup(config, num_labels, is_regression)      # inside strategy.scope()
    trainer = TrainerModel(setup.network, setup.loss_fn, setup.metric_names,
                           trainable_variables_fn=setup.trainable_variables_fn)
    items = setup.all_checkpoint_items(trainer)                             # encoder, classifier_head, optimizer, ...
    result = train_and_evaluate(trainer, dataset_fn, ..., evaluate_fn=..., best=BestCheckpoint(output_dir, key))

Extension points (TinyBERT task distillation, FastBERT): `build_classifier_setup` is the one place that decides what
is trained (network + loss + metrics + trainable variables) and what is checkpointed; a variant returns another
`ClassifierSetup` (e.g. a network wrapping student and teacher, a loss over hidden states, extra checkpoint items
such as `fit_dense` or `branches`) and the training/evaluation code stays the same. Evaluation and prediction
(training/classifier_eval.py) only need `predict_fn(features) -> logits` ([B, num_labels] float32; [B, 1] for
regression). The records and task metadata are in training/classifier_records.py, the best checkpoint
(output_dir/best/) in training/best_checkpoint.py, FastBERT's early-exit evaluation in training/fastbert_speed.py.
"""
import dataclasses
import json
import math
import os

import keras
import numpy as np
import tensorflow as tf

import bertkit_errors
import bertkit_io
from data import finetuning
from modeling import build_classifier, build_fit_dense, checkpoints, model_dirs
from training import best_checkpoint, distillation, fastbert, tinybert
from training import progress as progress_lib
from training import trainer as trainer_lib

EVAL_HISTORY_FILE = "eval_history.json"
MODEL_FILES = ("bert_config.json", "vocab.txt", "bertkit.json")


# ----------------------------------------------------------------------------------------------------------------
# Model setup
# ----------------------------------------------------------------------------------------------------------------

def classification_loss_fn(is_regression):
    """loss_fn for TrainerModel over logits [B, C]: softmax cross-entropy (MSE on logits[:, 0] for regression),
    mean over the real examples (`is_real_example` weights). Metrics: accuracy (classification only)."""
    def loss_fn(features, logits):
        logits = tf.cast(logits, tf.float32)
        weights = tf.cast(tf.reshape(features["is_real_example"], [-1]), tf.float32)
        denom = tf.maximum(tf.reduce_sum(weights), 1.0)
        if is_regression:
            labels = tf.reshape(tf.cast(features["label_ids"], tf.float32), [-1])
            per_example = tf.square(logits[:, 0] - labels)
            return tf.reduce_sum(per_example * weights) / denom, {}
        labels = tf.reshape(tf.cast(features["label_ids"], tf.int32), [-1])
        per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
        return tf.reduce_sum(per_example * weights) / denom, {"accuracy": (correct, weights)}

    return loss_fn


def model_inputs(features):
    """The encoder's inputs out of a record batch."""
    return {k: features[k] for k in ("input_ids", "input_mask", "segment_ids")}


@dataclasses.dataclass
class ClassifierSetup:
    """What is trained and checkpointed.

    classifier: the model predictions come from (`.encoder`, `.head`; features -> logits); exported by --do_export.
    network: what TrainerModel calls in train_step (the classifier here; a student/teacher wrapper for distillation).
    loss_fn, metric_names: for TrainerModel (`loss_fn(features, network_outputs) -> (loss, metrics)`).
    checkpoint_items: name -> trackable, the model part of the checkpoint (optimizer/global_step come from the
      trainer, see `all_checkpoint_items`). Restoring these alone (expect_partial) is enough to predict.
    trainable_variables_fn: None (all of network's trainable variables) or a callable.
    encoder: the encoder layer-wise LR decay and --init_checkpoint apply to.
    branches: FastBERT's BranchSet (build_fastbert_setup), else None.
    """
    classifier: object
    network: object
    loss_fn: object
    metric_names: list
    checkpoint_items: dict
    trainable_variables_fn: object = None
    encoder: object = None
    branches: object = None
    _predict: object = dataclasses.field(default=None, repr=False)

    def all_checkpoint_items(self, trainer):
        return dict(self.checkpoint_items, optimizer=trainer.optimizer, global_step=trainer.global_step)

    @property
    def predict_fn(self):
        """tf.function features -> float32 logits of the classifier (inference mode)."""
        if self._predict is None:
            classifier = self.classifier
            self._predict = tf.function(lambda f: tf.cast(classifier(model_inputs(f), training=False), tf.float32),
                                        reduce_retracing=True)
        return self._predict


class InputsFilter(keras.Model):
    """Calls `model` on the encoder inputs of a record batch (label_ids, is_real_example, ... are dropped)."""

    def __init__(self, model, name="classifier_network", **kwargs):
        super().__init__(name=name, **kwargs)
        self.model = model
        self.built = True

    def call(self, features, training=False):
        return self.model(model_inputs(features), training=training)


def build_classifier_setup(config, num_labels, is_regression=False, dropout=None):
    """The plain fine-tuning setup: `modeling.build_classifier` trained with `classification_loss_fn`.
    Call inside `strategy.scope()`. Checkpoint items: `encoder`, `classifier_head` (DESIGN.md names)."""

    classifier = build_classifier(config, 1 if is_regression else num_labels, dropout)
    return ClassifierSetup(
        classifier=classifier,
        network=InputsFilter(classifier),
        loss_fn=classification_loss_fn(is_regression),
        metric_names=[] if is_regression else ["accuracy"],
        checkpoint_items={"encoder": classifier.encoder, "classifier_head": classifier.head},
        trainable_variables_fn=None,
        encoder=classifier.encoder,
    )


def build_task_distillation_setup(config, num_labels, teacher, teacher_config, *, is_regression=False,
                                  stage="both", layer_mapping=None, attention_loss="mse", temperature=1.0,
                                  hard_label_weight=0.0, fit_dense=None, dropout=None):
    """TinyBERT task distillation (run_classifier.py --teacher_checkpoint): a student `build_classifier(config)`
    trained against the frozen `teacher` classifier (`.encoder`, `.head`) with the DistillationLoss of `stage`.

    The intermediate stages need a projection when the widths differ: `fit_dense` (e.g. restored from a general
    distillation checkpoint by the caller) or a fresh `modeling.build_fit_dense`; it is then a checkpoint item and
    trained. Trainable: the student encoder (+ fit_dense) for "intermediate" (the head gets no signal), the student
    encoder + head for "prediction", all three for "both". `classifier` / `predict_fn` are the student's, so
    evaluation, prediction and export see the student only; checkpoint items `encoder`, `classifier_head` (+
    `fit_dense`) load into a plain classifier."""
    student = build_classifier(config, 1 if is_regression else num_labels, dropout)
    inter = stage in ("intermediate", "both")
    if not inter:
        fit_dense = None
    elif fit_dense is None and config.hidden_size != teacher_config.hidden_size:
        fit_dense = build_fit_dense(config, teacher_config.hidden_size)
    loss = distillation.DistillationLoss(
        config.hidden_size, teacher_config.hidden_size, config.num_hidden_layers, teacher_config.num_hidden_layers,
        layer_mapping=layer_mapping if inter else None, stage=stage, attention_loss=attention_loss,
        temperature=temperature, hard_label_weight=hard_label_weight, is_regression=is_regression,
        fit_dense=fit_dense, use_projection=False)
    network = tinybert.TaskDistillationNetwork(student, teacher, loss)
    items = {"encoder": student.encoder, "classifier_head": student.head}
    if fit_dense is not None:
        items["fit_dense"] = fit_dense

    def trainable():
        variables = list(student.encoder.trainable_variables)
        if stage != "intermediate":
            variables += list(student.head.trainable_variables)
        if fit_dense is not None:
            variables += list(fit_dense.trainable_variables)
        return variables

    return ClassifierSetup(
        classifier=student, network=network, loss_fn=tinybert.task_distillation_loss_fn(loss),
        metric_names=tinybert.task_distillation_metric_names(loss), checkpoint_items=items,
        trainable_variables_fn=trainable, encoder=student.encoder)


def restore_fit_dense(fit_dense, prefix):
    """Restore `fit_dense` from checkpoint `prefix` (a general distillation output) when it has one whose variable
    shapes match. Returns True if it did (False: no `fit_dense` there, or other widths: keep the fresh one)."""
    if fit_dense is None:
        return False
    shapes = sorted(tuple(shape) for name, shape in tf.train.list_variables(prefix)
                    if name.startswith("fit_dense/") and name.endswith("VARIABLE_VALUE")
                    and "OPTIMIZER_SLOT" not in name)
    ours = sorted(tuple(v.shape) for v in fit_dense.variables)
    if not shapes or shapes != ours:
        return False
    try:
        checkpoints.read_objects(prefix, fit_dense=fit_dense)
    except (AssertionError, ValueError):
        return False
    return True


def build_fastbert_setup(config, num_labels, *, stage="finetune", branch_hidden_size=128, dropout=None):
    """FastBERT (run_classifier.py --fastbert): `build_classifier(config)` plus a `training.fastbert.BranchSet` of
    num_hidden_layers - 1 branch classifiers (built, so they are saved even untrained). Checkpoint items `encoder`,
    `classifier_head`, `branches`.

    stage "finetune": the plain fine-tuning network/loss (the branches are not trained). stage "distill":
    `SelfDistillationNetwork` (encoder and final head frozen) trained on the KL to the final classifier, only the
    branches trainable; labels are not needed. `setup.branches` is the BranchSet."""
    if stage not in ("finetune", "distill"):
        raise bertkit_errors.UserError(f"--fastbert_stage={stage}: expected finetune or distill")
    if config.num_hidden_layers < 2:
        raise bertkit_errors.UserError(f"--fastbert: the model has {config.num_hidden_layers} layer; FastBERT needs "
                                       "at least 2 (a branch after every layer but the last)")
    if branch_hidden_size <= 0 or branch_hidden_size % 2:
        raise bertkit_errors.UserError(f"--branch_hidden_size={branch_hidden_size}: must be a positive even number "
                                       "(2 attention heads)")
    classifier = build_classifier(config, num_labels, dropout)
    branches = fastbert.BranchSet(config.num_hidden_layers, num_labels, branch_hidden_size)
    for branch in branches:
        branch.build((None, None, config.hidden_size))
    branches.built = True
    items = {"encoder": classifier.encoder, "classifier_head": classifier.head, "branches": branches}
    if stage == "finetune":
        setup = ClassifierSetup(
            classifier=classifier, network=InputsFilter(classifier), loss_fn=classification_loss_fn(False),
            metric_names=["accuracy"], checkpoint_items=items, trainable_variables_fn=None,
            encoder=classifier.encoder, branches=branches)
    else:
        network = fastbert.SelfDistillationNetwork(classifier.encoder, classifier.head, branches)
        setup = ClassifierSetup(
            classifier=classifier, network=network, loss_fn=fastbert.self_distillation_loss_fn(),
            metric_names=fastbert.self_distillation_metric_names(len(branches)), checkpoint_items=items,
            trainable_variables_fn=lambda: list(branches.trainable_variables), encoder=classifier.encoder,
            branches=branches)
    return setup


# ----------------------------------------------------------------------------------------------------------------
# Model directories and --init_checkpoint
# ----------------------------------------------------------------------------------------------------------------

def model_dir_defaults(init_checkpoint, vocab_dir=None):
    """For an --init_checkpoint that is a model directory (or a checkpoint prefix inside one): bertkit, original TF1
    or HuggingFace (see modeling.model_dirs.model_dir_defaults; a vocabulary only in tokenizer.json is written as
    vocab.txt into `vocab_dir`): {"bert_config_file", "vocab_file", "do_lower_case", "task_meta", "model_dir"} for
    what it holds (missing keys absent). {} for anything else."""
    out = model_dirs.model_dir_defaults(init_checkpoint, vocab_dir=vocab_dir)
    if out:
        meta = finetuning.read_task_meta(out["model_dir"])
        if meta is not None:
            out["task_meta"] = meta
    return out


def restore_head(setup, prefix):
    """Restore the `classifier_head` of checkpoint `prefix` into setup's classifier when the checkpoint has one.
    Returns True if it did."""
    names = [name for name, _ in tf.train.list_variables(prefix)]
    if not any(n.startswith("classifier_head/") for n in names):
        return False
    try:
        checkpoints.read_objects(prefix, classifier_head=setup.classifier.head)
    except (AssertionError, ValueError) as e:
        raise bertkit_errors.UserError(f"--init_checkpoint={prefix}: classifier head does not match "
                                       f"({str(e).splitlines()[0][:200]})") from None
    return True


# ----------------------------------------------------------------------------------------------------------------
# Evaluation history
# ----------------------------------------------------------------------------------------------------------------

def _load_history(output_dir):
    path = os.path.join(output_dir, EVAL_HISTORY_FILE)
    return best_checkpoint.read_json(path) if os.path.isfile(path) else {}


def known_eval_results(output_dir, global_step):
    """The dev results train_and_evaluate recorded for the checkpoint of `global_step` (eval_history.json), or None:
    the final evaluation of that checkpoint reuses them instead of running the dev set (and logging it) again."""
    results = _load_history(output_dir).get(str(int(global_step)))
    return dict(results) if isinstance(results, dict) else None


def _save_history(output_dir, history):
    with bertkit_io.atomic_write(os.path.join(output_dir, EVAL_HISTORY_FILE)) as f:
        json.dump(history, f, indent=2, sort_keys=True)
        f.write("\n")


# ----------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------

def num_train_steps_for(num_examples, batch_size, num_epochs):
    """The original: int(num_train_examples / train_batch_size * num_train_epochs), rounded up here (at least 1)."""
    return max(1, math.ceil(num_examples / batch_size * num_epochs - 1e-9))


def epoch_end_steps(num_examples, batch_size, num_epochs):
    """Global steps at which each (whole or final partial) epoch ends."""
    total = num_train_steps_for(num_examples, batch_size, num_epochs)
    per_epoch = num_examples / batch_size
    ends = [min(total, max(1, math.ceil(per_epoch * e - 1e-9))) for e in range(1, int(math.floor(num_epochs)) + 1)]
    ends.append(total)
    return sorted(set(ends))


def train_and_evaluate(trainer, dataset_fn, *, strategy, output_dir, epoch_ends, steps_per_checkpoint,
                       iterations_per_loop, checkpoint_items, examples_per_step, evaluate_fn=None, best=None,
                       init_fn=None, max_checkpoints_to_keep=5, hparams=None, is_chief=True, print_fn=print,
                       progress_interval=progress_lib.DEFAULT_INTERVAL):
    """Train epoch by epoch (trainer.run_training to each epoch's end step, so a checkpoint is written every
    steps_per_checkpoint steps and at each epoch end); after each epoch `evaluate_fn(global_step) -> results`
    (when given) and `best.update`. Resumable: a rerun skips finished epochs and does not re-evaluate epochs
    recorded in eval_history.json. Progress lines count to the last epoch's end step. Returns {"global_step",
    "trained_steps", "examples_per_second"}."""
    history = _load_history(output_dir) if evaluate_fn is not None else {}
    start_step = None
    eps = []
    global_step = 0
    for epoch, end in enumerate(epoch_ends, 1):
        if start_step is not None and global_step >= end:
            continue  # finished in an earlier run (the first run_training call restored the checkpoint)
        spe = trainer_lib.steps_per_execution_for(iterations_per_loop, steps_per_checkpoint, end)
        if int(trainer.steps_per_execution or 1) != spe:
            trainer.steps_per_execution = spe
            trainer.train_function = None
        result = trainer_lib.run_training(
            trainer, dataset_fn, strategy=strategy, output_dir=output_dir, num_train_steps=end,
            steps_per_checkpoint=steps_per_checkpoint, checkpoint_items=checkpoint_items,
            examples_per_step=examples_per_step, init_fn=init_fn, max_checkpoints_to_keep=max_checkpoints_to_keep,
            hparams=hparams if epoch == 1 else None, print_fn=print_fn, total_steps=epoch_ends[-1],
            progress_interval=progress_interval)
        if start_step is None:
            start_step = result["initial_step"]
        if result.get("examples_per_second"):
            eps.append(result["examples_per_second"])
        global_step = result["global_step"]
        print_fn(f"epoch {epoch}/{len(epoch_ends)} done at global step {global_step}")
        if evaluate_fn is None or str(end) in history or global_step != end:
            continue
        results = evaluate_fn(global_step)
        history[str(end)] = results
        if is_chief:
            _save_history(output_dir, history)
            latest = tf.train.latest_checkpoint(output_dir)
            if best is not None and latest and latest.endswith(f"ckpt-{global_step}"):
                if best.update(global_step, results, latest):
                    print_fn(f"new best checkpoint: step {global_step} {best.metric_key}="
                             f"{results.get(best.metric_key)}")
    return {"global_step": global_step, "trained_steps": global_step - (start_step or 0),
            "examples_per_second": float(np.mean(eps)) if eps else None}


__all__ = [
    "ClassifierSetup", "InputsFilter", "build_classifier_setup", "classification_loss_fn", "model_inputs",
    "build_task_distillation_setup", "restore_fit_dense", "build_fastbert_setup", "model_dir_defaults",
    "restore_head", "num_train_steps_for", "epoch_end_steps", "train_and_evaluate", "known_eval_results",
]
