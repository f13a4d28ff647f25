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
import torch
from scipy import ndimage

from audit.errors import AuditError
from audit.metrics.base import MapBatch, Metric
from audit.metrics.intervals import CI_METHOD, mean_interval

COLUMNS = ("region_iou", "region_iop", "region_iot", "region_auprc", "region_pointing_game",
           "region_relevance_mass", "region_relevance_rank_accuracy")


# Every metric works on a batch of E images flattened to rows: scores (E, N), masks (E, N) bool,
# and one stable descending sort of the scores per image shared by top-p, AUPRC and rank
# accuracy. The single-image functions below are the same code on one row.


def _sorted(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row sorted from the highest score, ties in raster order, and that order."""
    return torch.sort(scores, dim=1, descending=True, stable=True)


def _kth_largest(sorted_scores: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """(E, 1) the counts-th largest score of each row."""
    return sorted_scores.gather(1, (counts - 1)[:, None])


def top_pixels_rows(scores: torch.Tensor, sorted_scores: torch.Tensor, order: torch.Tensor,
                    counts: torch.Tensor, ties: str) -> torch.Tensor:
    """(E, N) bool: the ``counts`` highest scores of each row (ties as in the module docstring)."""
    if ties == "exact":
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(order.shape[1]).expand_as(order))
        return rank < counts[:, None]
    return scores >= _kth_largest(sorted_scores, counts)


def overlap_rows(selected: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(IoU, IoP, IoT) per row of the selected sets S with the masks L; both non-empty."""
    intersection = (selected & mask).sum(1, dtype=torch.float64)
    union = (selected | mask).sum(1, dtype=torch.float64)
    return intersection / union, intersection / mask.sum(1), intersection / selected.sum(1)


def average_precision_rows(mask: torch.Tensor, sorted_scores: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """AP = Σ_k (R_k − R_{k−1}) P_k over each row's distinct thresholds, highest first (as
    sklearn). Equivalently (1/|L|) Σ_{i ∈ L} P at the end of the tie group of pixel i."""
    labels = mask.gather(1, order)
    true_positives = labels.cumsum(1, dtype=torch.float64)
    n = labels.shape[1]
    position = torch.arange(n).expand_as(order)
    group_ends = torch.cat([sorted_scores[:, 1:] != sorted_scores[:, :-1], torch.ones_like(labels[:, :1])], dim=1)
    end = torch.where(group_ends, position, n).flip(1).cummin(1).values.flip(1)
    precision = true_positives.gather(1, end) / (end + 1)
    return (precision * labels).sum(1) / true_positives[:, -1]


def pointing_game_rows(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Share of each row's maximal pixels that lie in the mask (1 or 0 without ties)."""
    maximal = scores == scores.amax(1, keepdim=True)
    return (maximal & mask).sum(1, dtype=torch.float64) / maximal.sum(1)


def relevance_mass_rows(saliency: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ_{mask} max(g, 0) / Σ max(g, 0) per row; NaN without positive relevance."""
    positive = saliency.clamp_min(0)
    total = positive.sum(1)
    return torch.where(total > 0, (positive * mask).sum(1) / total, math.nan)


def rank_accuracy_rows(scores: torch.Tensor, mask: torch.Tensor, sorted_scores: torch.Tensor) -> torch.Tensor:
    """Expected share of the top-|mask| pixels inside the mask per row, ties broken at random."""
    k = mask.sum(1)
    threshold = _kth_largest(sorted_scores, k)
    above, tied = scores > threshold, scores == threshold
    inside_above = (above & mask).sum(1, dtype=torch.float64)
    tied_share = (tied & mask).sum(1, dtype=torch.float64) / tied.sum(1)
    return (inside_above + (k - above.sum(1)) * tied_share) / k


def _row(array: np.ndarray, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array).ravel()[None]).to(dtype)


def top_pixels(scores: np.ndarray, count: int, ties: str = "inclusive") -> np.ndarray:
    """Boolean mask of the ``count`` highest scores of one map (ties as in the module docstring)."""
    row = _row(scores)
    selected = top_pixels_rows(row, *_sorted(row), torch.tensor([count]), ties)
    return selected[0].numpy().reshape(np.shape(scores))


def overlap(selected: np.ndarray, mask: np.ndarray) -> tuple[float, float, float]:
    """(IoU, IoP, IoT) of the selected set S with the mask L; both non-empty."""
    return tuple(float(v[0]) for v in overlap_rows(_row(selected, torch.bool), _row(mask, torch.bool)))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """AP of one map against its labels (see ``average_precision_rows``)."""
    return float(average_precision_rows(_row(labels, torch.bool), *_sorted(_row(scores)))[0])


def relevance_rank_accuracy(scores: np.ndarray, mask: np.ndarray) -> float:
    """Expected share of the top-|mask| pixels inside the mask, ties broken at random."""
    row = _row(scores)
    return float(rank_accuracy_rows(row, _row(mask, torch.bool), _sorted(row)[0])[0])


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

    def _values(self, maps: np.ndarray, masks: np.ndarray) -> torch.Tensor:
        """(E, 7) metric values, columns as ``COLUMNS``, for E maps with non-empty masks."""
        if self.blur_sigma > 0:
            maps = ndimage.gaussian_filter(maps, (0, self.blur_sigma, self.blur_sigma))
        saliency = torch.from_numpy(maps.reshape(len(maps), -1))
        mask = torch.from_numpy(masks.reshape(len(masks), -1))
        scores = saliency.abs() if self.absolute else saliency
        sorted_scores, order = _sorted(scores)
        selected = top_pixels_rows(scores, sorted_scores, order, mask.sum(1), self.ties)
        return torch.stack([*overlap_rows(selected, mask), average_precision_rows(mask, sorted_scores, order),
                            pointing_game_rows(scores, mask), relevance_mass_rows(saliency, mask),
                            rank_accuracy_rows(scores, mask, sorted_scores)], dim=1)

    def update(self, batch: MapBatch) -> None:
        values = np.full((len(batch), len(COLUMNS)), math.nan)
        scored = np.zeros(len(batch), dtype=bool)
        for i in range(len(batch)):
            reason = region_exclusion(bool(batch.has_region[i]), batch.region[i])
            if reason is None:
                scored[i] = True
            else:
                self._excluded[reason] += 1
        if scored.any():
            values[scored] = self._values(batch.maps[scored].astype(np.float64), batch.region[scored]).numpy()
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
