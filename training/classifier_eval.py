"""Evaluation and prediction of a classifier (any `predict_fn(features) -> logits`, [B, num_labels] float32; [B, 1]
for regression) for run_classifier.py: running it over record batches with progress lines, GLUE-style metrics of the
dev splits (TensorBoard scalars under output_dir/logs/eval) and the original prediction files.

    results = evaluate(setup.predict_fn, {"dev": dataset}, task_name="mrpc", is_regression=False)
    outputs = run_predictions(setup.predict_fn, test_dataset)
    write_predictions(output_dir, "test", ["test"], outputs, labels=labels, is_regression=False)
"""
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

import bertkit_io
from training import metrics as metrics_lib
from training import progress as progress_lib


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


__all__ = [
    "run_predictions", "softmax", "eval_loss", "evaluate", "main_metric_key", "prediction_file_names",
    "write_predictions",
]
