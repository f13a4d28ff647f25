"""Saliency versus intervention: does a method's saliency on the artefact predict what removing
the artefact does to the prediction? Ours, not from a paper; Pfau et al. 2019 (Appendix A.1)
and Cohen et al. 2021 (Sec. 1) warn that a saliency map can point at the artefact while the
model does not rely on it, and ablation is the direct test.

Per method, over the images with an artefact (both values defined):

    rho = Spearman rank correlation between s(X) and d(X)
    s(X) = artefact enrichment E(X) = (Σ_A |g| / Σ |g|) / (|A| / HW)   (``enrichment``)
    d(X) = p_t(X) − p_t(X_A)   (drop of the explained class's probability, t from ``--target``,
                                when the artefact is replaced by the image mean; ``ablation``,
                                = −artefact_delta)

Why enrichment rather than m(X) of |g| (our choice): E is invariant to the scale of each
image's map, and gradient magnitudes vary from image to image with the logit's saturation,
which would otherwise correlate with the drop whatever the map's location. The pipeline takes
E per image from ``ArtefactEnrichment.update``. rho > 0: images whose saliency sits more on
the artefact are the ones whose prediction depends more on it (the map is faithful there);
rho ≈ 0: the saliency on the artefact says nothing about the model's reliance on it.

Spearman and its two-sided p-value are ``scipy.stats.spearmanr`` (average ranks for ties;
the p-value uses the t distribution with n − 2 degrees of freedom). None with a reason when
n < 3 or either variable is constant.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from audit.metrics.base import ImageColumns, Metric
from audit.metrics.intervals import json_number

SALIENCY_VALUE = "artefact enrichment E(X) = (sum_A |g| / sum |g|) / (|A| / HW)"
INTERVENTION_VALUE = "p_t(X) - p_t(X with the artefact set to the image mean)"


class SaliencyIntervention(Metric):
    """Spearman ρ between per-image saliency on the artefact and the ablation drop, streamed.

    ``update(record)`` per batch with the record's (N,) columns ``saliency`` and ``drop``;
    pairs where either is NaN (no artefact, all-zero map) are skipped and counted. Keeps two
    float lists (and the paths).
    """

    name = "saliency_vs_intervention"

    def __init__(self) -> None:
        self.add_state("paths", [], "cat", dtype=str)
        self.add_state("saliency", [], "cat")
        self.add_state("drop", [], "cat")
        self.add_state("skipped", 0, "sum")

    def update(self, record: ImageColumns) -> None:
        saliency = np.asarray(record["saliency"], dtype=np.float64)
        drop = np.asarray(record["drop"], dtype=np.float64)
        if saliency.shape != drop.shape or saliency.ndim != 1:
            raise ValueError(f"saliency {saliency.shape} and drop {drop.shape} must be equal (N,)")
        defined = np.isfinite(saliency) & np.isfinite(drop)
        self.skipped += int(np.count_nonzero(~defined))
        self.paths.extend(record.paths)
        self.saliency.extend(saliency[defined].tolist())
        self.drop.extend(drop[defined].tolist())

    def compute(self) -> dict:
        """{"spearman", "p_value", "n", "skipped", "saliency", "intervention"} (+ "reason")."""
        n = len(self.saliency)
        result: dict = {"spearman": None, "p_value": None, "n": n, "skipped": self.skipped,
                        "saliency": SALIENCY_VALUE, "intervention": INTERVENTION_VALUE}
        if n < 3:
            result["reason"] = (f"{n} image(s) with both values; Spearman needs at least 3 ({self.skipped} skipped: "
                                f"no artefact mask, or an all-zero map, which has no enrichment)")
            return result
        for name, values in (("saliency", self.saliency), ("drop", self.drop)):
            if min(values) == max(values):
                result["reason"] = f"the {name} is the same for every image; no ranking"
                return result
        rho, p_value = stats.spearmanr(self.saliency, self.drop)
        result.update(spearman=json_number(rho), p_value=json_number(p_value))
        return result
