"""GLUE metrics (numpy) against scikit-learn / scipy on random data."""
import math

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from data import processors
from training import metrics


@pytest.mark.parametrize("seed", range(5))
def test_binary_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    y = rng.integers(0, 2, n)
    p = np.where(rng.random(n) < 0.7, y, 1 - y)
    assert metrics.accuracy(p, y) == pytest.approx(skm.accuracy_score(y, p))
    assert metrics.f1_score(p, y) == pytest.approx(skm.f1_score(y, p, zero_division=0.0))
    assert metrics.matthews_corrcoef(p, y) == pytest.approx(skm.matthews_corrcoef(y, p))
    out = metrics.compute_metrics("MRPC", p, y)
    assert out["f1"] == pytest.approx(skm.f1_score(y, p))
    assert out["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    assert out["acc_and_f1"] == pytest.approx((out["f1"] + out["accuracy"]) / 2)
    assert metrics.compute_metrics("cola", p, y)["matthews_corr"] == pytest.approx(skm.matthews_corrcoef(y, p))


@pytest.mark.parametrize("seed", range(5))
def test_multiclass_metrics_match_sklearn(seed):
    rng = np.random.default_rng(100 + seed)
    n, k = int(rng.integers(5, 300)), int(rng.integers(3, 6))
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += rng.random(n) * 2        # better than chance
    p = logits.argmax(-1)
    out = metrics.compute_metrics("bbc", logits, y)     # logits: argmax taken
    assert out["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    assert out["macro_f1"] == pytest.approx(skm.f1_score(y, p, average="macro", zero_division=0.0))
    assert metrics.compute_metrics("ax", p, y)["matthews_corr"] == pytest.approx(skm.matthews_corrcoef(y, p))
    assert metrics.compute_metrics("mnli", p, y)["accuracy"] == pytest.approx(skm.accuracy_score(y, p))


@pytest.mark.parametrize("seed", range(5))
def test_correlations_match_scipy(seed):
    rng = np.random.default_rng(200 + seed)
    n = int(rng.integers(3, 300))
    y = np.round(rng.uniform(0, 5, n) * 5) / 5          # STS-B-like scores with many ties
    p = y + rng.normal(scale=1.0, size=n)
    if seed % 2:
        p = np.round(p)                                  # ties in the predictions too
    out = metrics.compute_metrics("sts-b", p[:, None], y)   # [N, 1] regression output accepted
    assert out["pearson"] == pytest.approx(stats.pearsonr(p, y)[0], abs=1e-10)
    assert out["spearman"] == pytest.approx(stats.spearmanr(p, y)[0], abs=1e-10)
    assert out["pearson_and_spearman"] == pytest.approx((out["pearson"] + out["spearman"]) / 2)


def test_mask_drops_padding_examples():
    y = np.array([1, 0, 1, 0, 0, 0])
    p = np.array([1, 0, 0, 1, 1, 1])
    mask = np.array([1, 1, 1, 1, 0, 0])
    out = metrics.compute_metrics("qqp", p, y, mask=mask)
    assert out["num_examples"] == 4
    assert out["accuracy"] == pytest.approx(0.5)
    assert out["f1"] == pytest.approx(skm.f1_score(y[:4], p[:4]))


def test_degenerate_cases():
    y = np.array([0, 0, 0])
    assert metrics.f1_score(np.array([0, 0, 0]), y) == 0.0      # sklearn zero_division=0
    assert metrics.matthews_corrcoef(np.array([0, 0, 0]), y) == 0.0
    assert math.isnan(metrics.pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        metrics.compute_metrics("sst-2", [0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="unknown task"):
        metrics.compute_metrics("squad", [0], [0])


def test_main_metrics_follow_bert_paper_and_match_processors():
    expected = {"cola": "matthews_corr", "sst-2": "accuracy", "mrpc": "f1", "sts-b": "spearman", "qqp": "f1",
                "mnli": "accuracy", "mnli-mm": "accuracy", "qnli": "accuracy", "rte": "accuracy",
                "wnli": "accuracy", "xnli": "accuracy", "ax": "matthews_corr", "custom": "accuracy",
                "bbc": "accuracy"}
    for task, name in expected.items():
        assert metrics.main_metric(task) == name
        assert metrics.main_metric(task.upper()) == name
        if task != "custom":
            assert processors.get_processor(task).main_metric == name
    assert metrics.main_metric("custom", is_regression=True) == "spearman"
    # every main metric is a key compute_metrics returns
    for task, name in expected.items():
        y = np.array([0.0, 1.0, 2.0]) if task == "sts-b" else np.array([0, 1, 1])
        assert name in metrics.compute_metrics(task, y, y)


def test_custom_regression_and_splits():
    out = metrics.compute_metrics("custom", [0.1, 0.5, 0.9], [0.0, 1.0, 2.0], is_regression=True)
    assert out["spearman"] == pytest.approx(1.0)
    res = metrics.compute_metrics_for_splits("mnli", {"dev_matched": ([0, 1, 2], [0, 1, 1]),
                                                      "dev_mismatched": ([2, 2], [2, 2])})
    assert res["dev_matched/accuracy"] == pytest.approx(2 / 3)
    assert res["dev_mismatched/accuracy"] == 1.0
