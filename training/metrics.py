"""Evaluation metrics per task, as GLUE reports them. numpy only (scikit-learn/scipy are test oracles, not deps).

    >>> from training.metrics import compute_metrics, main_metric
    >>> compute_metrics("mrpc", predictions, labels)   # -> {"accuracy", "f1", "acc_and_f1"}
    >>> main_metric("mrpc")                            # -> "f1"

`predictions`: class ids [N], or logits/probabilities [N, C] (argmax is taken); for regression, values [N] or [N, 1].
`labels`: label ids [N] (floats for regression). `mask` (optional, [N]): 0 drops an example (the padding examples,
is_real_example == 0, of the fine-tuning records).

Main metrics follow the BERT paper (Table 1): F1 for MRPC and QQP, Spearman for STS-B, Matthews correlation for
CoLA, accuracy for the others; AX (diagnostics) uses GLUE's R3 (multi-class Matthews correlation). The other GLUE
numbers are returned too (accuracy for MRPC/QQP, Pearson for STS-B, and GLUE's averages `acc_and_f1`,
`pearson_and_spearman`). For MNLI, evaluate each dev set and name them with `compute_metrics_for_splits`.
"""
import re

import numpy as np

_TASKS = {
    # task: (metric set, main metric)
    "cola": ("mcc", "matthews_corr"),
    "sst-2": ("acc", "accuracy"),
    "mrpc": ("f1", "f1"),
    "sts-b": ("corr", "spearman"),
    "qqp": ("f1", "f1"),
    "mnli": ("acc", "accuracy"),
    "mnli-mm": ("acc", "accuracy"),
    "qnli": ("acc", "accuracy"),
    "rte": ("acc", "accuracy"),
    "wnli": ("acc", "accuracy"),
    "xnli": ("acc", "accuracy"),
    "ax": ("mcc", "matthews_corr"),
    "custom": ("multi", "accuracy"),
    "bbc": ("multi", "accuracy"),
}
_ALIASES = {re.sub(r"[-_]", "", k): k for k in _TASKS}
_ALIASES.update({"mnlim": "mnli", "mnlimatched": "mnli", "mnlimismatched": "mnli-mm", "sst": "sst-2",
                 "diagnostic": "ax"})


def _task(task_name):
    key = re.sub(r"[-_\s]", "", str(task_name or "").strip().lower())
    if key not in _ALIASES:
        raise ValueError(f"unknown task {task_name!r} (choose from {', '.join(_TASKS)})")
    return _ALIASES[key]


def main_metric(task_name, is_regression=False):
    """Name of the metric used to report and select models for `task_name`."""
    task = _task(task_name)
    if is_regression or task == "sts-b":
        return "spearman"
    return _TASKS[task][1]


# ----------------------------------------------------------------------------------------------------------------
# Plain metrics


def accuracy(predictions, labels):
    p, y = np.asarray(predictions), np.asarray(labels)
    return float(np.mean(p == y)) if y.size else float("nan")


def f1_score(predictions, labels, positive=1):
    """Binary F1 of class `positive`; 0.0 when there are no true positives (as scikit-learn's zero_division)."""
    p, y = np.asarray(predictions) == positive, np.asarray(labels) == positive
    tp = float(np.sum(p & y))
    denom = float(np.sum(p) + np.sum(y))
    return 2.0 * tp / denom if denom > 0 and tp > 0 else 0.0


def macro_f1(predictions, labels, num_classes=None):
    """Unweighted mean of per-class F1 over the classes present in labels or predictions (scikit-learn 'macro')."""
    p, y = np.asarray(predictions), np.asarray(labels)
    classes = np.union1d(p, y) if num_classes is None else np.arange(num_classes)
    if classes.size == 0:
        return float("nan")
    return float(np.mean([f1_score(p, y, positive=c) for c in classes]))


def matthews_corrcoef(predictions, labels):
    """Matthews correlation (multi-class generalisation, R_K, as scikit-learn); 0.0 when undefined."""
    p, y = np.asarray(predictions).astype(np.int64), np.asarray(labels).astype(np.int64)
    if y.size == 0:
        return float("nan")
    classes, inv = np.unique(np.concatenate([y, p]), return_inverse=True)
    k = classes.size
    yi, pi = inv[:y.size], inv[y.size:]
    cm = np.zeros((k, k), dtype=np.float64)
    np.add.at(cm, (yi, pi), 1.0)
    t_sum = cm.sum(axis=1)
    p_sum = cm.sum(axis=0)
    n_correct = np.trace(cm)
    n = cm.sum()
    cov_ytyp = n_correct * n - np.dot(t_sum, p_sum)
    cov_ypyp = n * n - np.dot(p_sum, p_sum)
    cov_ytyt = n * n - np.dot(t_sum, t_sum)
    denom = cov_ytyt * cov_ypyp
    if denom == 0:
        return 0.0
    return float(cov_ytyp / np.sqrt(denom))


def pearson(x, y):
    """Pearson correlation; NaN when either input is constant (as scipy)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size < 2:
        return float("nan")
    xm, ym = x - x.mean(), y - y.mean()
    denom = np.sqrt(np.dot(xm, xm) * np.dot(ym, ym))
    if denom == 0:
        return float("nan")
    return float(np.clip(np.dot(xm, ym) / denom, -1.0, 1.0))


def _rankdata(a):
    """Ranks from 1, ties get their average rank (scipy.stats.rankdata 'average')."""
    a = np.asarray(a, dtype=np.float64)
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    new_group = np.concatenate([[True], sorted_a[1:] != sorted_a[:-1]])
    group_id = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    ends = np.concatenate([starts[1:], [a.size]])
    avg = (starts + ends - 1) / 2.0 + 1.0
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = avg[group_id]
    return ranks


def spearman(x, y):
    """Spearman rank correlation (Pearson of average ranks), NaN when either input is constant."""
    return pearson(_rankdata(x), _rankdata(y))


# ----------------------------------------------------------------------------------------------------------------
# Per task


def _prepare(predictions, labels, mask, regression):
    p = np.asarray(predictions)
    y = np.asarray(labels)
    if regression:
        p = p.astype(np.float64)
        if p.ndim > 1:
            if p.ndim != 2 or p.shape[1] != 1:
                raise ValueError(f"regression predictions must be [N] or [N, 1], got {np.shape(predictions)}")
            p = p[:, 0]
        y = y.astype(np.float64).reshape(-1)
    else:
        if p.ndim == 2:
            p = np.argmax(p, axis=-1)
        elif p.ndim != 1:
            raise ValueError(f"predictions must be class ids [N] or scores [N, C], got shape {p.shape}")
        y = y.reshape(-1)
    if p.shape[0] != y.shape[0]:
        raise ValueError(f"{p.shape[0]} predictions for {y.shape[0]} labels")
    if mask is not None:
        m = np.asarray(mask).reshape(-1).astype(bool)
        if m.shape[0] != y.shape[0]:
            raise ValueError(f"mask has {m.shape[0]} entries for {y.shape[0]} labels")
        p, y = p[m], y[m]
    return p, y


def compute_metrics(task_name, predictions, labels, mask=None, is_regression=None):
    """Dict of metric name -> float for one evaluation set of `task_name`.

    `is_regression` only matters for 'custom' (it defaults to False there); STS-B is always regression."""
    task = _task(task_name)
    kind = _TASKS[task][0]
    regression = task == "sts-b" or bool(is_regression)
    if regression:
        kind = "corr"
    p, y = _prepare(predictions, labels, mask, regression)
    out = {"num_examples": int(y.shape[0])}
    if kind == "corr":
        out["pearson"] = pearson(p, y)
        out["spearman"] = spearman(p, y)
        out["pearson_and_spearman"] = (out["pearson"] + out["spearman"]) / 2.0
        return out
    out["accuracy"] = accuracy(p, y)
    if kind == "mcc":
        out["matthews_corr"] = matthews_corrcoef(p, y)
    elif kind == "f1":
        out["f1"] = f1_score(p, y, positive=1)
        out["acc_and_f1"] = (out["accuracy"] + out["f1"]) / 2.0
    elif kind == "multi":
        out["macro_f1"] = macro_f1(p, y)
    return out


def compute_metrics_for_splits(task_name, results, is_regression=None):
    """`results`: {split_name: (predictions, labels) or (predictions, labels, mask)} -> {"<split>/<metric>": value}.
    For MNLI: {"dev_matched/accuracy": ..., "dev_mismatched/accuracy": ...}."""
    out = {}
    for split, value in results.items():
        metrics = compute_metrics(task_name, *value, is_regression=is_regression)
        out.update({f"{split}/{k}": v for k, v in metrics.items()})
    return out
