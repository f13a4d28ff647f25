"""Classification performance on the images with and without the artefact (Pfau et al. 2019,
"Global Saliency: Aggregating Saliency Maps to Assess Dataset Artefact Bias", Appendix A.2,
Table 2: AUROC on the inked and the uninked validation images).

An image has the artefact when it has an artefact mask file *and* the mask is non-empty
(``artefact_present``); every other image, with or without a mask file, is in "absent".
Accuracy (with its Clopper–Pearson interval) and AUROC are those of ``audit.metrics.performance``
(AUROC: sklearn's ``roc_auc_score`` through ``performance.auroc``, one-vs-rest macro mean for
more than two classes), on the images of the subset with a known label. A value that cannot be computed
(no labelled image in the subset, one class only) is None with a reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from audit.data.batch import Batch
from audit.metrics.performance import Performance

SUBSETS = ("present", "absent")


def artefact_present(batch: Batch) -> np.ndarray:
    """(N,) bool: the image has an artefact mask file and the mask has at least one pixel."""
    return np.asarray(batch.has_artefact, bool) & np.asarray(batch.artefact, bool).any(axis=(1, 2))


class PerformanceBySubset:
    """Accuracy, AUROC and n on the images with ("present") and without ("absent") the artefact.

    ``update`` per batch with the labels (-1 = unknown), the (N, K) class probabilities and
    ``artefact_present``; ``compute`` once at the end.
    """

    name = "performance_by_artefact"

    def __init__(self) -> None:
        self._performance = Performance()
        self._present: list[np.ndarray] = []

    def update(self, labels: np.ndarray, probabilities: np.ndarray, present: np.ndarray) -> None:
        present = np.asarray(present, dtype=bool)
        if present.shape != (len(labels),):
            raise ValueError(f"artefact_present has shape {present.shape}; expected ({len(labels)},)")
        self._performance.update(labels, probabilities)
        self._present.append(present)

    def compute(self) -> dict[str, Any]:
        """{"present": {...}, "absent": {...}}, each {"images", "n", "accuracy",
        "accuracy_ci95", "interval", "auc"} with "reason" (no labelled image) or "auc_reason"
        (one class) where a value is None.
        "images" counts every image of the subset, "n" those with a known label."""
        present = np.concatenate(self._present) if self._present else np.zeros(0, bool)
        result: dict[str, Any] = {}
        for subset, members in zip(SUBSETS, (present, ~present)):
            result[subset] = {"images": int(members.sum()), **self._performance.compute(members)}
        return result
