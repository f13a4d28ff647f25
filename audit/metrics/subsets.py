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
from audit.metrics.base import ImageColumns
from audit.metrics.performance import Performance

SUBSETS = ("present", "absent")


def artefact_present(batch: Batch) -> np.ndarray:
    """(N,) bool: the image has an artefact mask file and the mask has at least one pixel."""
    return np.asarray(batch.has_artefact, bool) & np.asarray(batch.artefact, bool).any(axis=(1, 2))


class PerformanceBySubset(Performance):
    """Accuracy, AUROC and n on the images with ("present") and without ("absent") the artefact.

    ``update`` per batch with a record of ``labels`` (-1 = unknown), ``probabilities`` (N, K)
    and ``artefact_present`` (``artefact_present``); ``compute`` once at the end.
    """

    name = "performance_by_artefact"

    def __init__(self, confidence: float = 0.95) -> None:
        super().__init__(confidence)
        self.add_state("present", [], "cat", dtype=bool)

    def update(self, record: ImageColumns) -> None:
        super().update(record)
        self.present.extend(np.asarray(record["artefact_present"], dtype=bool).tolist())

    def compute(self) -> dict[str, Any]:
        """{"present": {...}, "absent": {...}}, each {"images", "n", "accuracy",
        "accuracy_ci95", "interval", "auc"} with "reason" (no labelled image) or "auc_reason"
        (one class) where a value is None.
        "images" counts every image of the subset, "n" those with a known label."""
        present = np.asarray(self.present, dtype=bool)
        result: dict[str, Any] = {}
        for subset, members in zip(SUBSETS, (present, ~present)):
            result[subset] = {"images": int(members.sum()), **super().compute(members)}
        return result
