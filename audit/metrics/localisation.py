"""Does the map point at the region that matters? Per image, against the region mask L.

Binarised overlap (Viviano et al. 2020; Cohen et al. 2021, Sec. 3.4): keep the top-p pixels of
the map, p = |L|, as the set S, then

    IoU = |S ∩ L| / |S ∪ L|,   IoP = |S ∩ L| / |L|,   IoT = |S ∩ L| / |S|.

Ties at the p-th largest value t (our choice, ``ties``): "inclusive" (default) keeps every
pixel >= t, so |S| >= p and S never depends on pixel position (a constant map keeps the whole
image); "exact" keeps exactly p pixels, breaking ties by raster index (first wins), which is
positional but keeps |S| = |L| (then IoP = IoT). Percentile thresholds that keep fewer than p
pixels (the pitfall noted in ALGORITHMS.md) are never used.
Blur (``blur_sigma``, default 0 = off; Viviano used σ = 1 on gradient maps, Cohen none): a
Gaussian filter (scipy.ndimage, reflect borders) on the map before every metric below.

Localisation utility (Aggarwal et al. 2020, Appendix B): per image, the AUPRC with the mask as
labels and the map as scores, as average precision AP = Σ_k (R_k − R_{k−1}) P_k over the
distinct score thresholds (sklearn's average_precision_score; tied scores form one threshold).
AP depends only on the order of the scores, so the paper's normalisation changes nothing.

Pointing game (Zhang et al. 2016): hit if the map's maximum lies in L. Ties (our choice): the
hit is the share of maximal pixels inside L, the expected hit when the tie is broken at random;
so a constant map scores |L|/HW (chance), never a sure hit.

Relevance mass (Arras et al. 2022): Σ_{L} max(g, 0) / Σ max(g, 0), on the signed map (its
definition; for a non-negative map that is g itself). Undefined (NaN) without positive mass.

Relevance rank accuracy (Arras et al. 2022): the share of the top-|L| pixels inside L. Ties at
the threshold: expected share under a random tie break (strictly-above pixels count fully, the
tied ones pro rata), so it does not depend on position.

Which map: IoU/IoP/IoT, localisation utility, pointing game and rank accuracy rank |g| when
``absolute`` (default: magnitude marks the pixels the model uses, whatever the sign), g as
given otherwise; relevance mass always uses max(g, 0).

Images without a region mask or with an empty one are excluded from every metric and counted
("not defined"), never scored as hits. Each metric: mean over images with a 95% t-interval.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from audit.errors import AuditError
from audit.metrics.base import MapBatch, Metric
from audit.metrics.intervals import CI_METHOD, mean_interval

COLUMNS = ("region_iou", "region_iop", "region_iot", "region_auprc", "region_pointing_game",
           "region_relevance_mass", "region_relevance_rank_accuracy")


def top_pixels(scores: np.ndarray, count: int, ties: str = "inclusive") -> np.ndarray:
    """Boolean mask of the ``count`` highest scores (ties as in the module docstring)."""
    flat = np.asarray(scores, dtype=np.float64).ravel()
    order = np.argsort(-flat, kind="stable")
    if ties == "exact":
        selected = np.zeros(flat.size, dtype=bool)
        selected[order[:count]] = True
    else:
        selected = flat >= flat[order[count - 1]]
    return selected.reshape(np.shape(scores))


def overlap(selected: np.ndarray, mask: np.ndarray) -> tuple[float, float, float]:
    """(IoU, IoP, IoT) of the selected set S with the mask L; both non-empty."""
    intersection = np.count_nonzero(selected & mask)
    union = np.count_nonzero(selected | mask)
    return (intersection / union, intersection / np.count_nonzero(mask),
            intersection / np.count_nonzero(selected))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """AP = Σ (R_k − R_{k−1}) P_k over distinct thresholds, highest first (as sklearn)."""
    labels = np.asarray(labels, dtype=bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    threshold_ends = np.r_[np.flatnonzero(scores[1:] != scores[:-1]), scores.size - 1]
    true_positives = np.cumsum(labels)[threshold_ends]
    precision = true_positives / (threshold_ends + 1)
    recall = true_positives / true_positives[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def pointing_game(scores: np.ndarray, mask: np.ndarray) -> float:
    """Share of the maximal pixels that lie in the mask (1 or 0 without ties)."""
    maximal = scores == scores.max()
    return np.count_nonzero(maximal & mask) / np.count_nonzero(maximal)


def relevance_mass(saliency: np.ndarray, mask: np.ndarray) -> float:
    """Σ_{mask} max(g, 0) / Σ max(g, 0); NaN without positive relevance."""
    positive = np.maximum(np.asarray(saliency, dtype=np.float64), 0.0)
    total = positive.sum()
    return float(positive[mask].sum() / total) if total > 0 else math.nan


def relevance_rank_accuracy(scores: np.ndarray, mask: np.ndarray) -> float:
    """Expected share of the top-|mask| pixels inside the mask, ties broken at random."""
    k = np.count_nonzero(mask)
    threshold = np.sort(scores, axis=None)[-k]
    above, tied = scores > threshold, scores == threshold
    inside_above = np.count_nonzero(above & mask)
    tied_share = np.count_nonzero(tied & mask) / np.count_nonzero(tied)
    return (inside_above + (k - np.count_nonzero(above)) * tied_share) / k


def region_exclusion(has_mask: bool, mask: np.ndarray) -> str | None:
    """Why an image has no localisation score: "no_region_mask", "empty_region_mask" or None."""
    if not has_mask:
        return "no_region_mask"
    if not mask.any():
        return "empty_region_mask"
    return None


class RegionLocalisation(Metric):
    """IoU, IoP, IoT, localisation utility (AUPRC), pointing game, relevance mass and rank
    accuracy against the region mask; each summarised as a mean with a t-interval.

    blur_sigma: Gaussian blur of the map first (0 = off). ties: "inclusive" or "exact" top-p.
    absolute: rank |g| (default) or g as given. confidence: level of the t-intervals.
    """

    name = "localisation"

    def __init__(self, blur_sigma: float = 0.0, ties: str = "inclusive", absolute: bool = True,
                 confidence: float = 0.95) -> None:
        if ties not in ("inclusive", "exact"):
            raise AuditError(f"tie rule {ties!r} is unknown; use 'inclusive' or 'exact'")
        if blur_sigma < 0:
            raise AuditError(f"blur sigma {blur_sigma} is negative; use 0 (off) or e.g. 1")
        self.blur_sigma = blur_sigma
        self.ties = ties
        self.absolute = absolute
        self.confidence = confidence
        self._columns: dict[str, list[float]] = {name: [] for name in COLUMNS}
        self._excluded = {"no_region_mask": 0, "empty_region_mask": 0,
                          "relevance_mass_without_positive_saliency": 0}

    def _image_values(self, saliency: np.ndarray, mask: np.ndarray) -> tuple[float, ...]:
        if self.blur_sigma > 0:
            saliency = ndimage.gaussian_filter(saliency, self.blur_sigma)
        scores = np.abs(saliency) if self.absolute else saliency
        selected = top_pixels(scores, np.count_nonzero(mask), self.ties)
        return (*overlap(selected, mask), average_precision(mask, scores),
                pointing_game(scores, mask), relevance_mass(saliency, mask),
                relevance_rank_accuracy(scores, mask))

    def update(self, batch: MapBatch) -> None:
        for i in range(len(batch)):
            mask = batch.region[i]
            reason = region_exclusion(bool(batch.has_region[i]), mask)
            if reason is not None:
                self._excluded[reason] += 1
                values: tuple[float, ...] = (math.nan,) * len(COLUMNS)
            else:
                values = self._image_values(batch.maps[i].astype(np.float64), mask)
                if math.isnan(values[COLUMNS.index("region_relevance_mass")]):
                    self._excluded["relevance_mass_without_positive_saliency"] += 1
            for name, value in zip(COLUMNS, values):
                self._columns[name].append(float(value))

    def compute(self) -> dict:
        return {
            "name": self.name,
            "blur_sigma": self.blur_sigma,
            "ties": self.ties,
            "map": "absolute value |g|" if self.absolute else "as given (signed)",
            "interval": CI_METHOD,
            "n_images": len(self._columns[COLUMNS[0]]),
            "excluded": dict(self._excluded),
            **{name.removeprefix("region_"): mean_interval(np.asarray(values), self.confidence)
               for name, values in self._columns.items()},
        }

    def per_image(self) -> dict[str, list]:
        return {name: list(values) for name, values in self._columns.items()}
