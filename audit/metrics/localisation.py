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
from audit.metrics.base import MapBatch, Metric, scored_images
from audit.metrics.intervals import CI_METHOD, mean_interval

COLUMNS = ("region_iou", "region_iop", "region_iot", "region_auprc", "region_pointing_game",
           "region_relevance_mass", "region_relevance_rank_accuracy")


# Every metric works on a batch of E images flattened to rows: scores (E, N), masks (E, N) bool,
# and each row's scores sorted ascending (values only: numpy's vectorised sort is several times
# faster than an argsort, and no metric needs the order except the "exact" tie rule). The
# single-image functions below are the same code on one row.


def _kth_largest(ascending: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(E, 1) the counts-th largest score of each row."""
    return ascending[np.arange(len(ascending)), ascending.shape[1] - counts][:, None]


def _count(selected: np.ndarray) -> np.ndarray:
    """(E,) int64 number of True per row (ratios of counts come out float64)."""
    return np.count_nonzero(selected, axis=1)


def top_pixels_rows(scores: np.ndarray, ascending: np.ndarray, counts: np.ndarray, ties: str) -> np.ndarray:
    """(E, N) bool: the ``counts`` highest scores of each row (ties as in the module docstring)."""
    if ties == "exact":
        order = np.argsort(-scores, axis=1, kind="stable")  # ties in raster order
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(scores.shape[1])[None], axis=1)
        return rank < counts[:, None]
    return scores >= _kth_largest(ascending, counts)


def overlap_rows(selected: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, ...]:
    """(IoU, IoP, IoT) per row of the selected sets S with the masks L; both non-empty."""
    intersection = _count(selected & mask)
    return intersection / _count(selected | mask), intersection / _count(mask), intersection / _count(selected)


def average_precision_rows(scores: np.ndarray, mask: np.ndarray, ascending: np.ndarray) -> np.ndarray:
    """AP = Σ_k (R_k − R_{k−1}) P_k over each row's distinct thresholds, highest first (as
    sklearn). Equivalently AP = (1/|L|) Σ_{i ∈ L} |{j ∈ L : s_j ≥ s_i}| / |{j : s_j ≥ s_i}|: the
    precision at the end of pixel i's tie group, counted by binary search in the sorted scores."""
    n = scores.shape[1]
    result = np.empty(len(scores))
    for row in range(len(scores)):
        positives = np.sort(scores[row][mask[row]])
        at_least_all = n - np.searchsorted(ascending[row], positives, side="left")
        at_least_positive = len(positives) - np.searchsorted(positives, positives, side="left")
        result[row] = np.mean(at_least_positive / at_least_all)
    return result


def pointing_game_rows(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Share of each row's maximal pixels that lie in the mask (1 or 0 without ties)."""
    maximal = scores == scores.max(axis=1, keepdims=True)
    return _count(maximal & mask) / _count(maximal)


def relevance_mass_rows(saliency: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Σ_{mask} max(g, 0) / Σ max(g, 0) per row (in float64); NaN without positive relevance."""
    positive = np.maximum(saliency, 0)
    total = positive.sum(axis=1, dtype=np.float64)
    inside = positive.sum(axis=1, dtype=np.float64, where=mask)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / total, math.nan)


def rank_accuracy_rows(scores: np.ndarray, mask: np.ndarray, ascending: np.ndarray) -> np.ndarray:
    """Expected share of the top-|mask| pixels inside the mask per row, ties broken at random."""
    k = _count(mask)
    threshold = _kth_largest(ascending, k)
    above, tied = scores > threshold, scores == threshold
    tied_share = _count(tied & mask) / _count(tied)
    return (_count(above & mask) + (k - _count(above)) * tied_share) / k


def _row(array: np.ndarray) -> np.ndarray:
    return np.asarray(array).reshape(1, -1)


def top_pixels(scores: np.ndarray, count: int, ties: str = "inclusive") -> np.ndarray:
    """Boolean mask of the ``count`` highest scores of one map (ties as in the module docstring)."""
    row = _row(scores)
    return top_pixels_rows(row, np.sort(row, axis=1), np.array([count]), ties)[0].reshape(np.shape(scores))


def overlap(selected: np.ndarray, mask: np.ndarray) -> tuple[float, float, float]:
    """(IoU, IoP, IoT) of the selected set S with the mask L; both non-empty."""
    return tuple(float(v[0]) for v in overlap_rows(_row(selected).astype(bool), _row(mask).astype(bool)))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """AP of one map against its labels (see ``average_precision_rows``)."""
    row = _row(scores)
    return float(average_precision_rows(row, _row(labels).astype(bool), np.sort(row, axis=1))[0])


def relevance_rank_accuracy(scores: np.ndarray, mask: np.ndarray) -> float:
    """Expected share of the top-|mask| pixels inside the mask, ties broken at random."""
    row = _row(scores)
    return float(rank_accuracy_rows(row, _row(mask).astype(bool), np.sort(row, axis=1))[0])


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

    def _values(self, maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """(E, 7) metric values, columns as ``COLUMNS``, for E maps with non-empty masks."""
        if self.blur_sigma > 0:
            maps = ndimage.gaussian_filter(maps.astype(np.float64), (0, self.blur_sigma, self.blur_sigma))
        saliency = maps.reshape(len(maps), -1)
        mask = masks.reshape(len(masks), -1)
        scores = np.abs(saliency) if self.absolute else saliency
        ascending = np.sort(scores, axis=1)
        selected = top_pixels_rows(scores, ascending, _count(mask), self.ties)
        return np.stack([*overlap_rows(selected, mask), average_precision_rows(scores, mask, ascending),
                         pointing_game_rows(scores, mask), relevance_mass_rows(saliency, mask),
                         rank_accuracy_rows(scores, mask, ascending)], axis=1)

    def update(self, batch: MapBatch) -> None:
        values = np.full((len(batch), len(COLUMNS)), math.nan)
        scored = scored_images(batch, self._excluded, "region")
        if scored.any():
            values[scored] = self._values(batch.maps[scored], batch.region[scored])
        mass = values[scored, COLUMNS.index("region_relevance_mass")]
        self._excluded["relevance_mass_without_positive_saliency"] += int(np.isnan(mass).sum())
        for name, column in zip(COLUMNS, values.T):
            self._columns[name].extend(column.tolist())

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
