"""Fine-tuning logic behind run_classifier.py: model setup, records, per-epoch training with best-checkpoint keeping,
GLUE-style evaluation and prediction files.

    setup = build_classifier_setup(config, num_labels, is_regression)      # inside strategy.scope()
    trainer = TrainerModel(setup.network, setup.loss_fn, setup.metric_names,
                           trainable_variables_fn=setup.trainable_variables_fn)
    items = setup.all_checkpoint_items(trainer)                             # encoder, classifier_head, optimizer, ...
    results = evaluate(setup.predict_fn, {"dev": dataset}, task_name="mrpc", is_regression=False)

Extension points (TinyBERT task distillation, FastBERT): `build_classifier_setup` is the one place that decides what
is trained (network + loss + metrics + trainable variables) and what is checkpointed; a variant returns another
`ClassifierSetup` (e.g. a network wrapping student and teacher, a loss over hidden states, extra checkpoint items
such as `fit_dense` or `branches`) and the training/evaluation code below stays the same. Evaluation and prediction
only need `predict_fn(features) -> logits` ([B, num_labels] float32; [B, 1] for regression).

Best checkpoint: after each epoch's evaluation the checkpoint is copied to `output_dir/best/` (`ckpt-N.*`, a
`checkpoint` state file, so `tf.train.latest_checkpoint(best_dir)` finds it, and `best.json` with step, metric and
metrics) when the task's main metric improved. `best.json` is written after the files it names and the old files
are removed after it, so an interrupted update never leaves a `best.json` naming missing files.
"""
import dataclasses
import glob
import json
import math
import os
import shutil
import sys
import time

import keras
import numpy as np

import bertkit_errors
import bertkit_io
from modeling import checkpoints
from training import progress as progress_lib

BEST_DIR = "best"
BEST_FILE = "best.json"
EVAL_HISTORY_FILE = "eval_history.json"
MODEL_FILES = ("bert_config.json", "vocab.txt", "bertkit.json")


# ----------------------------------------------------------------------------------------------------------------
# Model setup
# ----------------------------------------------------------------------------------------------------------------

def classification_loss_fn(is_regression):
    """loss_fn for TrainerModel over logits [B, C]: softmax cross-entropy (MSE on logits[:, 0] for regression),
    mean over the real examples (`is_real_example` weights). Metrics: accuracy (classification only)."""
    import tensorflow as tf

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
            import tensorflow as tf

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
    from modeling import build_classifier

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
    from modeling import build_classifier, build_fit_dense
    from training import distillation, tinybert

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
    import tensorflow as tf

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
    from modeling import build_classifier
    from training import fastbert

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


def fastbert_speed_evaluation(setup, datasets, speeds, *, output_dir=None, global_step=0, print_fn=print):
    """Early-exit evaluation of a FastBERT setup on every dev split ({split: dataset}) at each speed
    (`training.fastbert.evaluate_speeds`). Returns (flat results for eval_results.txt, prefixed `<split>/` with
    several splits, {split: rows}). With `output_dir`: the table is written to output_dir/speed_table.txt and the
    speed/accuracy curve logged under output_dir/logs/eval at global_step."""
    from training import fastbert

    results, all_rows, tables = {}, {}, []
    prefix = len(datasets) > 1
    for split, dataset in datasets.items():
        rows = fastbert.evaluate_speeds(setup.encoder, setup.branches, setup.classifier.head, dataset, speeds)
        all_rows[split] = rows
        flat = fastbert.speed_results_for_eval_file(rows)
        results.update({(f"{split}/{k}" if prefix else k): v for k, v in flat.items()})
        table = fastbert.format_speed_table(rows)
        tables.append((f"{split}:\n" if prefix else "") + table)
        print_fn(f"FastBERT early exit on {split}:\n{table}")
        if output_dir is not None:
            log_dir = os.path.join(output_dir, "logs", "eval" if not prefix else os.path.join("eval", split))
            fastbert.log_speed_curve(log_dir, rows, int(global_step))
    if output_dir is not None:
        with bertkit_io.atomic_write(os.path.join(output_dir, "speed_table.txt")) as f:
            f.write("\n\n".join(tables) + "\n")
    return results, all_rows


# ----------------------------------------------------------------------------------------------------------------
# Model directories, task metadata, records
# ----------------------------------------------------------------------------------------------------------------

def model_dir_defaults(init_checkpoint, vocab_dir=None):
    """For an --init_checkpoint that is a model directory (or a checkpoint prefix inside one): bertkit, original TF1
    or HuggingFace (see modeling.checkpoints.model_dir_defaults; a vocabulary only in tokenizer.json is written as
    vocab.txt into `vocab_dir`): {"bert_config_file", "vocab_file", "do_lower_case", "task_meta", "model_dir"} for
    what it holds (missing keys absent). {} for anything else."""
    from data import finetuning

    out = checkpoints.model_dir_defaults(init_checkpoint, vocab_dir=vocab_dir)
    if out:
        meta = finetuning.read_task_meta(out["model_dir"])
        if meta is not None:
            out["task_meta"] = meta
    return out


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise bertkit_errors.UserError(f"{path}: cannot read ({e})") from None


def resolve_checkpoint(path):
    """A checkpoint prefix for --init_checkpoint: a model directory's best/ checkpoint when it has one (a run_classifier
    output), else the path itself (a prefix, or a directory that restore_encoder_weights resolves)."""
    if path and os.path.isdir(path):
        best = BestCheckpoint(path, None).prefix()
        if best:
            return best
    return path


def restore_head(setup, prefix):
    """Restore the `classifier_head` of checkpoint `prefix` into setup's classifier when the checkpoint has one.
    Returns True if it did."""
    import tensorflow as tf

    names = [name for name, _ in tf.train.list_variables(prefix)]
    if not any(n.startswith("classifier_head/") for n in names):
        return False
    try:
        checkpoints.read_objects(prefix, classifier_head=setup.classifier.head)
    except (AssertionError, ValueError) as e:
        raise bertkit_errors.UserError(f"--init_checkpoint={prefix}: classifier head does not match "
                                       f"({str(e).splitlines()[0][:200]})") from None
    return True


def processor_from_meta(meta, skip_malformed=False):
    """Rebuild the processor that wrote records from their task_meta.json (for the source rows' ids)."""
    from data import processors

    cfg = dict(meta.get("processor") or {})
    task = cfg.pop("task_name", None) or meta.get("task")
    if processors.canonical_task_name(task) == "custom":
        custom = {k: cfg.get(k) for k in ("text_a_column", "text_b_column", "label_column", "id_column",
                                          "has_header", "is_regression")}
        if not meta.get("is_regression"):
            custom["labels"] = ",".join(meta.get("labels") or [])
        return processors.get_processor(task, skip_malformed=skip_malformed, **custom)
    return processors.get_processor(task, skip_malformed=skip_malformed, language=cfg.get("language"))


def task_is_pair(processor):
    """True when the task's examples are text pairs (text_a, text_b)."""
    if hasattr(processor, "text_b_column"):
        return processor.text_b_column is not None
    layouts = getattr(processor, "layouts", None) or {}
    return any(getattr(layout, "text_b", None) is not None for layout in layouts.values())


def splits_of_kind(meta, processor, kind):
    """Split names of `kind` ('train', 'dev', 'test') present in the records, in the processor's order."""
    order = {name: i for i, name in enumerate(processor.split_names())}
    names = [s for s, info in meta.get("splits", {}).items() if info.get("kind") == kind]
    return sorted(names, key=lambda s: order.get(s, len(order)))


def _wanted_splits(processor, do_train, do_eval, do_predict):
    names = []
    if do_train:
        names += list(processor.train_splits)
    if do_eval:
        names += list(processor.dev_splits)
    if do_predict:
        names += list(processor.test_splits)
    return names


def prepare_records(processor, data_dir, tokenizer, output_dir, max_seq_length, *, do_train, do_eval, do_predict,
                    vocab_file, do_lower_case, print_fn=print):
    """The original run_classifier.py behaviour: write the needed splits' records into output_dir (train.tf_record,
    eval/dev..., test...), reusing records already there when their task_meta.json matches (same task, labels, vocab,
    case, max_seq_length, processor settings, source file, and the record newer than its source). Returns the meta."""
    from data import finetuning

    wanted = _wanted_splits(processor, do_train, do_eval, do_predict)
    for kind, flag, names in (("train", "do_train", processor.train_splits), ("dev", "do_eval", processor.dev_splits),
                              ("test", "do_predict", processor.test_splits)):
        if {"train": do_train, "dev": do_eval, "test": do_predict}[kind] and not names:
            raise bertkit_errors.UserError(f"--{flag}: task {processor.task_name} has no {kind} set")
    labels = processor.get_labels(data_dir)
    expected = {
        "task": processor.task_name, "labels": list(labels), "is_regression": bool(processor.is_regression),
        "max_seq_length": int(max_seq_length), "vocab_file": os.path.abspath(vocab_file),
        "do_lower_case": bool(do_lower_case), "processor": processor.config(),
    }
    old = finetuning.read_task_meta(output_dir)
    missing = list(wanted)
    if old is not None and all(old.get(k) == v for k, v in expected.items()):
        missing = []
        for split in wanted:
            info = old.get("splits", {}).get(split)
            record = os.path.join(output_dir, info["file"]) if info and info.get("file") else None
            source = processor.split_path(data_dir, split)
            if (record is None or not os.path.isfile(record) or info.get("source") != os.path.abspath(source)
                    or not os.path.isfile(source) or os.path.getmtime(record) < os.path.getmtime(source)):
                missing.append(split)
    if not missing:
        print_fn(f"reusing the records in {output_dir} ({', '.join(wanted)})")
        return old
    meta = finetuning.write_task_records(processor, data_dir, tokenizer, output_dir, max_seq_length, splits=missing,
                                         vocab_file=vocab_file, do_lower_case=do_lower_case)
    for split in missing:
        info = meta["splits"][split]
        print_fn(f"{split}: {info['num_real_examples']} examples ({info['num_truncated']} truncated) -> "
                 f"{os.path.join(output_dir, info['file'])}")
    return meta


def check_labels_match(meta, other_meta, where):
    """UserError when two task metas disagree on the task's label list / regression."""
    if other_meta is None:
        return
    a = (bool(meta.get("is_regression")), list(meta.get("labels") or []))
    b = (bool(other_meta.get("is_regression")), list(other_meta.get("labels") or []))
    if a != b:
        def show(x):
            return "regression" if x[0] else ",".join(x[1])
        raise bertkit_errors.UserError(
            f"{where}: labels {show(b)} differ from the records' labels {show(a)} (task {meta.get('task')})")


def source_ids(meta, split, processor=None):
    """{example_index: id} for a split from its source file (the id part of each example's guid: the row's id column
    where the task has one, else its row number). {} when the source cannot be read."""
    info = meta.get("splits", {}).get(split, {})
    source = info.get("source")
    if not source or not os.path.isfile(source):
        return {}
    try:
        processor = processor or processor_from_meta(meta)
        examples = processor.get_examples(os.path.dirname(source), split)
    except (bertkit_errors.UserError, OSError, TypeError, KeyError):
        return {}
    out = {}
    for ex in examples:
        guid = str(ex.guid)
        out[int(ex.example_index)] = guid[len(split) + 1:] if guid.startswith(split + "-") else guid
    return out


# ----------------------------------------------------------------------------------------------------------------
# Prediction and evaluation (any predict_fn)
# ----------------------------------------------------------------------------------------------------------------

def run_predictions(predict_fn, dataset, *, description="predict", print_fn=print, total=None,
                    progress_interval=progress_lib.DEFAULT_INTERVAL):
    """Run predict_fn over every batch of `dataset` (record batches). Returns numpy arrays: logits [N, C],
    label_ids [N], is_real_example [N], example_index [N] (all records, padding included). On a terminal a progress
    bar; otherwise a line every `progress_interval` seconds (`<description>: done/total examples (P%), E examples/s,
    about M left`; `total`: the number of records, when known)."""
    logits, labels, real, index = [], [], [], []
    progbar = progress = None
    start = time.perf_counter()
    if sys.stdout.isatty():
        progbar = keras.utils.Progbar(None, unit_name="batch")
    else:
        progress = progress_lib.Progress(description, total, interval=progress_interval, print_fn=print_fn)
    done = 0
    for i, features in enumerate(dataset):
        out = np.asarray(predict_fn(features), dtype=np.float32)
        logits.append(out.reshape(out.shape[0], -1))
        labels.append(np.asarray(features["label_ids"]).reshape(-1))
        real.append(np.asarray(features["is_real_example"]).reshape(-1))
        index.append(np.asarray(features["example_index"]).reshape(-1))
        done += logits[-1].shape[0]
        if progbar is not None:
            progbar.update(i + 1)
        elif i == 0:
            progress.start(done)  # the first batch includes tracing
        else:
            progress.update(done)
    n = sum(x.shape[0] for x in logits)
    print_fn(f"{description}: {n} examples in {time.perf_counter() - start:.1f}s")
    if not logits:
        return {"logits": np.zeros((0, 1), np.float32), "label_ids": np.zeros((0,)), "is_real_example":
                np.zeros((0,), np.int64), "example_index": np.zeros((0,), np.int64)}
    return {"logits": np.concatenate(logits), "label_ids": np.concatenate(labels),
            "is_real_example": np.concatenate(real).astype(np.int64),
            "example_index": np.concatenate(index).astype(np.int64)}


def softmax(logits):
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def eval_loss(logits, labels, mask, is_regression):
    """Mean loss over the real examples (cross-entropy, or squared error for regression)."""
    m = np.asarray(mask).reshape(-1).astype(bool)
    logits = np.asarray(logits, dtype=np.float64)[m]
    if not logits.shape[0]:
        return float("nan")
    if is_regression:
        y = np.asarray(labels, dtype=np.float64).reshape(-1)[m]
        return float(np.mean((logits[:, 0] - y) ** 2))
    y = np.asarray(labels).reshape(-1)[m].astype(np.int64)
    z = logits - logits.max(axis=-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return float(-np.mean(log_p[np.arange(y.shape[0]), y]))


def evaluate(predict_fn, datasets, *, task_name, is_regression, global_step=None, output_dir=None, print_fn=print,
             totals=None, progress_interval=progress_lib.DEFAULT_INTERVAL):
    """Evaluate every dev split in `datasets` ({split: dataset}) on the whole split, padding examples excluded.
    totals: {split: number of records} for the progress lines (run_predictions).

    Returns {metric: value} as training.metrics.compute_metrics names them, plus eval_loss (and global_step when
    given); with several splits (MNLI) every key is prefixed `<split>/`. TensorBoard scalars go to
    `output_dir/logs/eval` at global_step."""
    from training import metrics as metrics_lib

    results = {}
    prefix = len(datasets) > 1
    for split, dataset in datasets.items():
        out = run_predictions(predict_fn, dataset, description=f"eval {split}", print_fn=print_fn,
                              total=(totals or {}).get(split), progress_interval=progress_interval)
        m = metrics_lib.compute_metrics(task_name, out["logits"][:, :1] if is_regression else out["logits"],
                                        out["label_ids"], mask=out["is_real_example"], is_regression=is_regression)
        m["eval_loss"] = eval_loss(out["logits"], out["label_ids"], out["is_real_example"], is_regression)
        results.update({(f"{split}/{k}" if prefix else k): v for k, v in m.items()})
    if global_step is not None:
        results["global_step"] = int(global_step)
    if output_dir is not None and global_step is not None:
        import tensorflow as tf

        writer = tf.summary.create_file_writer(os.path.join(output_dir, "logs", "eval"))
        with writer.as_default(step=int(global_step)):
            for k, v in results.items():
                if k != "global_step" and not k.endswith("num_examples"):
                    tf.summary.scalar(k, v)
        writer.close()
    print_fn("eval: " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                 for k, v in sorted(results.items())))
    return results


def main_metric_key(task_name, is_regression, dev_splits):
    from training import metrics as metrics_lib

    name = metrics_lib.main_metric(task_name, is_regression)
    return f"{dev_splits[0]}/{name}" if len(dev_splits) > 1 else name


def prediction_file_names(split, test_splits):
    """("test_results.tsv", "predictions.tsv") for a task's only test split; with several (MNLI) the split name
    without its `test_` prefix is the suffix: test_results_matched.tsv, predictions_mismatched.tsv."""
    if len(test_splits) <= 1:
        return "test_results.tsv", "predictions.tsv"
    suffix = split[len("test_"):] if split.startswith("test_") else split
    return f"test_results_{suffix}.tsv", f"predictions_{suffix}.tsv"


def write_predictions(output_dir, split, test_splits, outputs, *, labels, is_regression, ids=None):
    """Write the original `test_results.tsv` (tab-separated class probabilities, one row per real example, no header;
    the score for regression) and `predictions.tsv` (header id, label, probability: the row's id, the predicted
    label name and its probability; for regression the score and an empty probability). Returns the two paths."""
    ids = ids or {}
    real = outputs["is_real_example"].astype(bool)
    logits = outputs["logits"][real]
    index = outputs["example_index"][real]
    order = np.argsort(index, kind="stable")
    logits, index = logits[order], index[order]
    results_name, predictions_name = prediction_file_names(split, test_splits)
    results_path = os.path.join(output_dir, results_name)
    predictions_path = os.path.join(output_dir, predictions_name)
    probs = logits[:, :1] if is_regression else softmax(logits)
    with bertkit_io.atomic_write(results_path) as f:
        for row in probs:
            f.write("\t".join(str(np.float32(p)) for p in row) + "\n")
    with bertkit_io.atomic_write(predictions_path) as f:
        f.write("id\tlabel\tprobability\n")
        for i, row in zip(index, probs):
            row_id = ids.get(int(i), str(int(i)))
            if is_regression:
                f.write(f"{row_id}\t{str(np.float32(row[0]))}\t\n")
            else:
                k = int(np.argmax(row))
                f.write(f"{row_id}\t{labels[k]}\t{str(np.float32(row[k]))}\n")
    return results_path, predictions_path


# ----------------------------------------------------------------------------------------------------------------
# Best checkpoint
# ----------------------------------------------------------------------------------------------------------------

def _better(a, b):
    """a better than b (higher); NaN is worse than anything."""
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return False
    if b is None or (isinstance(b, float) and math.isnan(b)):
        return True
    return a > b


class BestCheckpoint:
    """`output_dir/best/`: a copy of the checkpoint with the best main metric so far + best.json."""

    def __init__(self, output_dir, metric_key):
        self.dir = os.path.join(output_dir, BEST_DIR)
        self.metric_key = metric_key

    def info(self):
        path = os.path.join(self.dir, BEST_FILE)
        if not os.path.isfile(path):
            return None
        info = _read_json(path)
        prefix = os.path.join(self.dir, info.get("checkpoint", ""))
        if not os.path.isfile(prefix + ".index"):
            return None
        return info

    def prefix(self):
        info = self.info()
        return os.path.join(self.dir, info["checkpoint"]) if info else None

    def update(self, step, results, checkpoint_prefix):
        """Copy `checkpoint_prefix` into best/ when results[metric_key] beats the kept one. Returns True if it did."""
        value = results.get(self.metric_key)
        current = self.info()
        if current is not None and not _better(value, current.get("value")):
            return False
        os.makedirs(self.dir, exist_ok=True)
        name = os.path.basename(checkpoint_prefix)
        for src in glob.glob(checkpoint_prefix + ".*"):
            dst = os.path.join(self.dir, os.path.basename(src))
            with open(src, "rb") as fin, bertkit_io.atomic_write(dst, "wb") as fout:
                shutil.copyfileobj(fin, fout)
        info = {"step": int(step), "checkpoint": name, "metric": self.metric_key,
                "value": None if value is None or (isinstance(value, float) and math.isnan(value)) else value,
                "metrics": results}
        with bertkit_io.atomic_write(os.path.join(self.dir, BEST_FILE)) as f:
            json.dump(info, f, indent=2, sort_keys=True)
            f.write("\n")
        with bertkit_io.atomic_write(os.path.join(self.dir, "checkpoint")) as f:  # tf.train.latest_checkpoint's file
            f.write(f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')
        keep = {os.path.basename(p) for p in glob.glob(os.path.join(self.dir, name + ".*"))}
        for path in glob.glob(os.path.join(self.dir, "ckpt-*")):
            if os.path.basename(path) not in keep:
                os.remove(path)
        return True


def _load_history(output_dir):
    path = os.path.join(output_dir, EVAL_HISTORY_FILE)
    return _read_json(path) if os.path.isfile(path) else {}


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
    import tensorflow as tf

    from training import trainer as trainer_lib

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
    "build_task_distillation_setup", "restore_fit_dense", "build_fastbert_setup", "fastbert_speed_evaluation",
    "model_dir_defaults", "resolve_checkpoint", "restore_head",
    "processor_from_meta", "task_is_pair", "splits_of_kind", "prepare_records", "check_labels_match", "source_ids",
    "run_predictions", "softmax", "eval_loss", "evaluate", "main_metric_key", "prediction_file_names",
    "write_predictions", "BestCheckpoint", "num_train_steps_for", "epoch_end_steps", "train_and_evaluate",
    "known_eval_results",
]
