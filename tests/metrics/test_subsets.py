import json

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from audit.data.batch import Batch
from audit.errors import AuditError
from audit.metrics.base import ImageColumns
from audit.metrics.subsets import PerformanceBySubset, artefact_present


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def record(labels, probabilities, present, first=0):
    """The per-image record ``PerformanceBySubset.update`` takes."""
    paths = [f"{first + i}.png" for i in range(len(labels))]
    return ImageColumns(paths, {"labels": labels, "probabilities": probabilities, "artefact_present": present})


def test_accuracy_and_auroc_per_subset_match_sklearn():
    rng = np.random.default_rng(0)
    n = 40
    labels = rng.integers(0, 3, n)
    labels[:3] = -1  # unknown labels do not count
    probabilities = softmax(rng.normal(size=(n, 3)) + 2 * np.eye(3)[np.maximum(labels, 0)])
    present = rng.random(n) < 0.5
    metric = PerformanceBySubset()
    for s in (slice(0, 17), slice(17, n)):
        metric.update(record(labels[s], probabilities[s], present[s], s.start))
    result = metric.compute()
    for subset, members in (("present", present), ("absent", ~present)):
        known = members & (labels >= 0)
        y, p = labels[known], probabilities[known]
        assert result[subset]["images"] == int(members.sum())
        assert result[subset]["n"] == int(known.sum())
        assert result[subset]["accuracy"] == pytest.approx(np.mean(p.argmax(1) == y))
        ci = stats.binomtest(int(np.sum(p.argmax(1) == y)), len(y)).proportion_ci(method="exact")
        assert result[subset]["accuracy_ci95"] == pytest.approx([ci.low, ci.high])
        assert result[subset]["interval"] == "clopper-pearson"
        assert result[subset]["auc"] == pytest.approx(
            roc_auc_score(y, p, multi_class="ovr", average="macro"))
    json.dumps(result, allow_nan=False)


def test_binary_auroc_uses_class_one():
    labels = np.array([0, 1, 0, 1, 1, 0])
    p1 = np.array([0.2, 0.9, 0.6, 0.4, 0.8, 0.1])
    metric = PerformanceBySubset()
    metric.update(record(labels, np.stack([1 - p1, p1], axis=1), np.ones(6, bool)))
    assert metric.compute()["present"]["auc"] == pytest.approx(roc_auc_score(labels, p1))  # 8/9


def test_undefined_values_are_null_with_a_reason():
    metric = PerformanceBySubset()
    metric.update(record(np.array([1, 1, -1]), np.array([[0.2, 0.8], [0.7, 0.3], [0.5, 0.5]]),
                         np.array([True, True, False])))
    result = metric.compute()
    assert result["present"]["accuracy"] == 0.5
    assert result["present"]["auc"] is None and "one class" in result["present"]["auc_reason"]
    assert result["absent"]["images"] == 1 and result["absent"]["n"] == 0
    assert result["absent"]["accuracy"] is None and result["absent"]["reason"]
    assert result["absent"]["accuracy_ci95"] is None
    empty = PerformanceBySubset().compute()
    assert empty["present"]["n"] == 0 and empty["present"]["auc"] is None


def test_artefact_present_needs_a_mask_file_and_a_pixel():
    artefact = np.zeros((3, 2, 2), bool)
    artefact[0, 1, 1] = artefact[2, 0, 0] = True
    batch = Batch(["a", "b", "c"], np.zeros(3, int), np.zeros((3, 2, 2, 1), np.float32), artefact,
                  np.zeros((3, 2, 2), bool), np.array([True, True, False]), np.zeros(3, bool))
    np.testing.assert_array_equal(artefact_present(batch), [True, False, False])


def test_present_must_match_the_labels():
    with pytest.raises(AuditError, match="artefact_present has shape"):
        PerformanceBySubset().update(record(np.zeros(3, int), np.zeros((3, 2)), np.zeros(2, bool)))
