"""Ablation summaries: does the prediction survive removing the artefact, or everything but the
region? (Pfau et al. 2019, Appendix A.1.) The forward passes are a pipeline stage
(``audit.stages.ablation``, whose docstring has the definitions); this metric accumulates its
per-image columns.

Summaries: the share of unchanged predictions with a 95% Clopper–Pearson interval (a
proportion of images: ``intervals.proportion_interval``; 0 of 30 changed gives 88.4%–100%
unchanged, not a point), the mean delta with a 95% Student t-interval
(``intervals.mean_interval``), how many changed predictions went to each class (Pfau report the
share moved to "Other"), and the excluded images by reason.
"""

from __future__ import annotations

import numpy as np

from audit.metrics.base import ImageColumns, Metric, exclusion_reason
from audit.metrics.intervals import mean_interval, proportion_interval
from audit.stages.ablation import KINDS

FILL = "per-channel mean of the whole image, in [0, 1] image space"


class ArtefactAblation(Metric):
    """Accumulates ``ablation_columns`` (``update(record)`` with the record's columns
    ``<kind>_same``, ``<kind>_delta``, ``<kind>_new_class`` and ``<kind>_excluded``).
    ``confidence`` sets the level of the intervals."""

    name = "ablation"

    def __init__(self, confidence: float = 0.95) -> None:
        self.confidence = confidence
        self.add_state("paths", [], "cat", dtype=str)
        for kind in KINDS:
            self.add_state(f"{kind}_same", [], "cat")
            self.add_state(f"{kind}_delta", [], "cat")
            self.add_state(f"{kind}_changed_to", {}, "sum")  # {str(class): changed predictions}
            self.add_state(f"{kind}_excluded", {f"no_{kind}_mask": 0, f"empty_{kind}_mask": 0}, "sum")

    def update(self, record: ImageColumns) -> None:
        self.paths.extend(record.paths)
        for kind in KINDS:
            same = np.asarray(record[f"{kind}_same"], dtype=np.float64)
            getattr(self, f"{kind}_same").extend(same.tolist())
            getattr(self, f"{kind}_delta").extend(np.asarray(record[f"{kind}_delta"], dtype=np.float64).tolist())
            changed, excluded = getattr(self, f"{kind}_changed_to"), getattr(self, f"{kind}_excluded")
            for k in np.asarray(record[f"{kind}_new_class"])[same == 0]:
                changed[str(int(k))] = changed.get(str(int(k)), 0) + 1
            for reason in record[f"{kind}_excluded"]:
                if reason:
                    excluded[str(reason)] += 1

    def compute(self) -> dict:
        """{"name", "fill", "artefact": {...}, "region": {...}}; per kind "n" (ablated images),
        "excluded" (counts by reason), "unchanged" (share of same predictions,
        proportion_interval), "delta_probability" (mean_interval of p_t after − before),
        "changed_to" ({class index: count} over the changed predictions), and "reason" when no
        image could be ablated."""
        result: dict = {"name": self.name, "fill": FILL}
        for kind in KINDS:
            same = np.asarray(getattr(self, f"{kind}_same"), dtype=np.float64)
            changed = getattr(self, f"{kind}_changed_to")
            block = result[kind] = {
                "n": int(np.count_nonzero(~np.isnan(same))),
                "excluded": dict(getattr(self, f"{kind}_excluded")),
                "unchanged": proportion_interval(same, self.confidence),
                "delta_probability": mean_interval(np.asarray(getattr(self, f"{kind}_delta")), self.confidence),
                "changed_to": {k: changed[k] for k in sorted(changed, key=int)},
            }
            if block["n"] == 0:
                block["reason"] = exclusion_reason(block["excluded"])
        return result

    def per_image(self) -> dict[str, list]:
        """Columns ablation_{artefact,region}_{same,delta}; NaN where excluded."""
        columns: dict[str, list] = {}
        for kind in KINDS:
            columns[f"ablation_{kind}_same"] = list(getattr(self, f"{kind}_same"))
            columns[f"ablation_{kind}_delta"] = list(getattr(self, f"{kind}_delta"))
        return columns
