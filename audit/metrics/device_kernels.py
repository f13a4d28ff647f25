"""The per-batch metric kernels in torch, for maps on a GPU (any device works): the functions of
``host_kernels`` with the same definitions and tie rules (``top_k``), run where the maps are;
only the (E,) per-image float64 values come back, in one copy per metric and batch (``to_host``).

Differences that do not change a definition: the k-th largest value comes from
``torch.kthvalue`` (the (N − k + 1)-th smallest) instead of a partition; AP counts the positives
at or above each score by binary search in the row sorted with −∞ in place of the negatives
(no finite score reaches −∞); row sums are sequential (``tensors.row_sums``), so that an
image's values do not depend on the batch it arrives in, where numpy sums pairwise. The results
agree with the host's within 1e-12 (tests/metrics/test_device_kernels.py).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from audit.metrics.tensors import row_sums


def count(selected: torch.Tensor) -> torch.Tensor:
    """(E,) int64 number of True per row."""
    return selected.sum(dim=1)


def float64(rows: torch.Tensor) -> torch.Tensor:
    return rows.to(torch.float64)


def to_host(columns: list[torch.Tensor]) -> np.ndarray:
    """The columns' values, concatenated, as float64 numpy: one copy from the device."""
    return torch.cat([c.reshape(-1).to(torch.float64) for c in columns]).cpu().numpy()


def kth_largest(ascending: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """(E, 1) the counts-th largest value of each ascending row (1 <= counts <= N)."""
    return ascending.gather(1, (ascending.shape[1] - counts)[:, None])


def kept_inside(scores: torch.Tensor, threshold: torch.Tensor, counts: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(E,) float64 |S ∩ L| = Σ_{i ∈ L} w_i of the top ``counts`` pixels (``top_k.kept_inside``)."""
    above, tied = scores > threshold, scores == threshold
    return count(above & mask) + (counts - count(above)) * (count(tied & mask).double() / count(tied))


def mean_on_rows(flat: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """m = Σ_A g / |A| per row (Pfau Eq. 2)."""
    return row_sums(torch.where(inside, flat, 0.0)) / count(inside)


def peak_on_rows(flat: torch.Tensor, inside: torch.Tensor, k: int) -> torch.Tensor:
    """n = Σ_{i ∈ A} w_i / k per row (Pfau Eq. 3, ties by expected value)."""
    pixels = flat.shape[1]
    threshold = torch.kthvalue(flat, pixels - k + 1, dim=1, keepdim=True).values
    return kept_inside(flat, threshold, torch.full((len(flat),), k, device=flat.device), inside) / k


def pixel_moments(flat: torch.Tensor) -> torch.Tensor:
    """(E, 2) each row's own mean and M2 = Σ (g − mean)²."""
    mean = row_sums(flat) / flat.shape[1]
    return torch.stack([mean, row_sums((flat - mean[:, None]) ** 2)], dim=1)


def shares_on_rows(flat: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """Σ_A |g| / Σ |g| per row; NaN where Σ |g| = 0 (an all-zero map)."""
    magnitude = flat.abs()
    total = row_sums(magnitude)
    return torch.where(total > 0, row_sums(torch.where(inside, magnitude, 0.0)) / total, math.nan)


def overlap_rows(scores: torch.Tensor, mask: torch.Tensor, ascending: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(IoU, IoP, IoT) per row: the top-|L| pixels S, ties by expected value, against L."""
    k = count(mask)
    inside = kept_inside(scores, kth_largest(ascending, k), k, mask)
    return inside / (2 * k - inside), inside / k, inside / k


def average_precision_rows(scores: torch.Tensor, mask: torch.Tensor, ascending: torch.Tensor) -> torch.Tensor:
    """AP per row, (1/|L|) Σ_{i ∈ L} |{j ∈ L : s_j ≥ s_i}| / |{j : s_j ≥ s_i}| (as sklearn)."""
    n = scores.shape[1]
    positives = torch.sort(scores.masked_fill(~mask, -math.inf), dim=1).values
    at_least_all = n - torch.searchsorted(ascending, scores, side="left")
    at_least_positive = n - torch.searchsorted(positives, scores, side="left")
    precision = torch.where(mask, at_least_positive.double() / at_least_all, 0.0)
    return row_sums(precision) / count(mask)


def pointing_game_rows(scores: torch.Tensor, mask: torch.Tensor, ascending: torch.Tensor) -> torch.Tensor:
    """Expected hit per row: the top-1 pixel's weight inside the mask."""
    ones = torch.ones(len(scores), dtype=torch.int64, device=scores.device)
    return kept_inside(scores, ascending[:, -1:], ones, mask)


def relevance_mass_rows(saliency: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ_{mask} max(g, 0) / Σ max(g, 0) per row (in float64); NaN without positive relevance."""
    positive = saliency.clamp(min=0).to(torch.float64)
    total = row_sums(positive)
    return torch.where(total > 0, row_sums(torch.where(mask, positive, 0.0)) / total, math.nan)


def localisation_rows(saliency: torch.Tensor, mask: torch.Tensor, absolute: bool = True) -> torch.Tensor:
    """(E, 7) IoU, IoP, IoT, AP, pointing game, relevance mass, rank accuracy (= IoP)."""
    scores = saliency.abs() if absolute else saliency
    ascending = torch.sort(scores, dim=1).values
    iou, iop, iot = overlap_rows(scores, mask, ascending)
    return torch.stack([iou, iop, iot, average_precision_rows(scores, mask, ascending),
                        pointing_game_rows(scores, mask, ascending), relevance_mass_rows(saliency, mask),
                        iop], dim=1)
