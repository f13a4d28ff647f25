"""Per-image values summarised overall and per class (by label and by prediction)."""

from __future__ import annotations

import numpy as np

from audit.metrics.intervals import json_number, mean_interval


def by_group(values: np.ndarray, groups: np.ndarray, confidence: float = 0.95) -> dict[str, dict]:
    """{str(class): mean_interval of the values in that class}; classes < 0 (unknown) skipped."""
    values = np.asarray(values, dtype=np.float64)
    groups = np.asarray(groups)
    return {
        str(int(g)): mean_interval(values[groups == g], confidence)
        for g in np.unique(groups)
        if g >= 0
    }


def inter_class_variance(per_class: dict[str, dict]) -> float | None:
    """Variance (ddof = 0) of the per-class means, each class weighted equally.

    Pfau et al. 2019 (Sec. 4) compare models by the "inter-class ink-saliency variance"
    without a formula; the unweighted population variance of the class means is our reading.
    None when fewer than two classes have a mean.
    """
    means = [s["mean"] for s in per_class.values() if s["mean"] is not None]
    if len(means) < 2:
        return None
    return json_number(np.var(np.asarray(means, dtype=np.float64)))


def summarise(
    values: np.ndarray, labels: np.ndarray, predictions: np.ndarray, confidence: float = 0.95
) -> dict:
    """{"overall", "by_label", "by_prediction", "inter_class_variance" (over label classes)},
    with "inter_class_variance_reason" where the variance is None."""
    per_label = by_group(values, labels, confidence)
    result = {
        "overall": mean_interval(values, confidence),
        "by_label": per_label,
        "by_prediction": by_group(values, predictions, confidence),
        "inter_class_variance": inter_class_variance(per_label),
    }
    if result["inter_class_variance"] is None:
        result["inter_class_variance_reason"] = "fewer than two classes (by label) have a mean"
    return result
