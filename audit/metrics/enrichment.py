"""Artefact enrichment: how much more saliency sits on the artefact than its area predicts.

Ours (the release-gate number), not from a paper. Per image, with |g| the absolute map and A
the artefact mask:

    E(X) = (Σ_{A} |g| / Σ |g|) / (|A| / HW)

1.0 is chance (saliency spread evenly), above 1 the map concentrates on the artefact, and a
mask covering the whole image gives exactly 1. |g| is used for every method: saliency of
either sign on the artefact counts as attention to it. E is invariant to scaling the map.

Undefined (NaN, excluded and counted): no artefact mask, an empty mask, an all-zero map.
``overall`` is the mean of the per-image E over the images where it is defined, with a 95%
t-interval; ``pooled`` is the ratio of means, mean(saliency share) / mean(area share), which
weighs images equally and damps images with tiny artefacts (whose E can be very large).
"""

from __future__ import annotations

import math

import numpy as np

from audit.metrics.base import MapBatch, Metric, kernels_for, rows_like, scored_images
from audit.metrics.grouping import by_group
from audit.metrics.intervals import json_number, mean_interval
from audit.metrics.tensors import Maps


def saliency_shares(maps: Maps, masks: Maps) -> np.ndarray:
    """(E,) Σ_{mask} |g| / Σ |g| per image of (E, H, W) maps and masks; NaN for an all-zero map."""
    kernels = kernels_for(maps)
    return kernels.to_host([kernels.shares_on_rows(kernels.float64(rows_like(maps, maps)), rows_like(masks, maps))])


class ArtefactEnrichment(Metric):
    """Per-image E(X), summarised overall (mean with CI, and pooled) and per class.

    confidence: level of the t-intervals.
    """

    name = "enrichment"

    def __init__(self, confidence: float = 0.95) -> None:
        self.confidence = confidence
        self.add_state("paths", [], "cat", dtype=str)
        self.add_state("labels", [], "cat", dtype=np.int64)
        self.add_state("predictions", [], "cat", dtype=np.int64)
        self.add_state("saliency_share", [], "cat")
        self.add_state("area_share", [], "cat")
        self.add_state("excluded", {"no_artefact_mask": 0, "empty_artefact_mask": 0, "zero_map": 0}, "sum")

    def update(self, batch: MapBatch) -> np.ndarray:
        """Record the batch; returns its (N,) E(X), NaN where an image is excluded."""
        self.paths.extend(batch.paths)
        self.labels.extend(int(label) for label in batch.labels)
        self.predictions.extend(int(p) for p in batch.predictions)
        shares, areas = np.full(len(batch), math.nan), np.full(len(batch), math.nan)
        scored = scored_images(batch, self.excluded)
        if scored.any():  # where the maps are; one copy of the shares to the host
            kernels = batch.kernels
            flat = kernels.float64(batch.rows("maps", scored))
            shares[scored] = kernels.to_host([kernels.shares_on_rows(flat, batch.rows("artefact", scored))])
            masks = batch.artefact[scored]
            areas[scored] = masks.reshape(len(masks), -1).mean(axis=1)
        zero = scored & np.isnan(shares)  # Σ |g| = 0: an all-zero map
        self.excluded["zero_map"] += int(zero.sum())
        areas[zero] = math.nan
        self.saliency_share.extend(shares.tolist())
        self.area_share.extend(areas.tolist())
        return shares / areas

    def _values(self) -> np.ndarray:
        return np.asarray(self.saliency_share, dtype=np.float64) / np.asarray(
            self.area_share, dtype=np.float64)

    def _pooled(self) -> dict:
        shares = np.asarray(self.saliency_share, dtype=np.float64)
        areas = np.asarray(self.area_share, dtype=np.float64)
        defined = ~np.isnan(shares)
        if not defined.any():
            return {"value": None, "reason": "no image with a defined enrichment"}
        return {"value": json_number(shares[defined].mean() / areas[defined].mean())}

    def compute(self) -> dict:
        values = self._values()
        return {
            "name": self.name,
            "formula": "(sum_A |g| / sum |g|) / (|A| / HW); 1.0 = chance",
            "n_images": len(self.labels),
            "excluded": dict(self.excluded),
            "overall": mean_interval(values, self.confidence),
            "pooled": self._pooled(),
            "by_label": by_group(values, np.asarray(self.labels), self.confidence),
            "by_prediction": by_group(values, np.asarray(self.predictions), self.confidence),
        }

    def per_image(self) -> dict[str, list]:
        return {
            "artefact_enrichment": self._values().tolist(),
            "artefact_saliency_share": list(self.saliency_share),
            "artefact_area_share": list(self.area_share),
        }
