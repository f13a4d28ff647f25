"""Classification performance: accuracy and AUROC, streamed over batches.

AUROC is sklearn's ``roc_auc_score``: for two classes on the probability of class 1; for more
classes (or ``--multilabel`` outputs) the unweighted mean of one-vs-rest AUROCs over the classes
present with both outcomes (sklearn's ``multi_class="ovr", average="macro"`` for softmax outputs).
Accuracy is a proportion of images: its 95% interval (``accuracy_ci95``) is Clopper–Pearson
(``intervals.proportion_interval``). Only images with a known label count. A value that cannot
be computed is None with a reason ("reason" for accuracy, "auc_reason" for AUROC).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from audit.metrics.base import ImageColumns, Metric
from audit.metrics.intervals import BINOMIAL_INTERVAL, proportion_interval


def auroc(labels: np.ndarray, probabilities: np.ndarray) -> tuple[float | None, str | None]:
    """(value, None) or (None, reason)."""
    if len(labels) == 0:
        return None, "no labelled images"
    present = np.unique(labels)
    if len(present) < 2:
        return None, f"only one class ({int(present[0])}) among the labelled images"
    if probabilities.shape[1] == 2:
        return float(roc_auc_score(labels, probabilities[:, 1])), None
    scores = [
        roc_auc_score(labels == k, probabilities[:, k])
        for k in range(probabilities.shape[1])
        if 0 < np.sum(labels == k) < len(labels)
    ]
    return float(np.mean(scores)), None


class Performance(Metric):
    """Accumulates the record columns ``labels`` (-1 = unknown) and ``probabilities`` (N, K);
    ``compute`` gives accuracy and AUROC over every image seen."""

    name = "performance"

    def __init__(self, confidence: float = 0.95) -> None:
        self.confidence = confidence
        self.add_state("paths", [], "cat", dtype=str)
        self.add_state("labels", [], "cat", dtype=np.int64)
        self.add_state("probabilities", [], "cat")  # (K,) rows

    def update(self, record: ImageColumns) -> None:
        self.paths.extend(record.paths)
        self.labels.extend(np.asarray(record["labels"], dtype=np.int64).tolist())
        self.probabilities.extend(np.asarray(record["probabilities"], dtype=np.float64))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.labels:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0))
        return np.asarray(self.labels, dtype=np.int64), np.stack(self.probabilities)

    def compute(self, subset: np.ndarray | None = None) -> dict[str, Any]:
        """{"n", "accuracy", "accuracy_ci95", "interval", "auc"} on the labelled images (of
        ``subset``), with "reason" / "auc_reason" where a value is None."""
        labels, probabilities = self.arrays()
        if subset is not None:
            labels, probabilities = labels[subset], probabilities[subset]
        known = labels >= 0
        labels, probabilities = labels[known], probabilities[known]
        result: dict[str, Any] = {"n": int(len(labels)), "accuracy": None, "accuracy_ci95": None,
                                  "interval": BINOMIAL_INTERVAL, "auc": None}
        if len(labels) == 0:
            result["reason"] = "no labelled images"
            return result
        accuracy = proportion_interval(probabilities.argmax(axis=1) == labels, self.confidence)
        result.update(accuracy=accuracy["mean"], accuracy_ci95=[accuracy["ci_low"], accuracy["ci_high"]])
        result["auc"], reason = auroc(labels, probabilities)
        if reason:
            result["auc_reason"] = reason
        return result
