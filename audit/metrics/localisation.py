"""Does the map point at the region that matters? Per image, against the region mask L.

Binarised overlap (Viviano et al. 2020; Cohen et al. 2021, Sec. 3.4): keep the top-k pixels of
the map, k = |L|, as the set S, then

    IoU = |S ∩ L| / |S ∪ L|,   IoP = |S ∩ L| / |L|,   IoT = |S ∩ L| / |S|.

Ties at the k-th largest value (our choice, ``top_k``): the pixels tied at the threshold share
what is left of the k by expected value, so |S| = k exactly, |S ∩ L| = Σ_{i ∈ L} w_i and
|S ∪ L| = |S| + |L| − |S ∩ L|, the expected sizes under a random tie break. A map that is zero
off a few strokes inside L then scores high (the zeros share the leftover budget), a constant
map scores chance (IoP = |L|/HW), and nothing depends on pixel position. With |S| = |L| = k,
IoP = IoT = relevance rank accuracy (below), and IoU = IoP / (2 − IoP). Percentile thresholds
that keep fewer than k pixels (the pitfall noted in ALGORITHMS.md) are never used.
Blur (``blur_sigma``, default 0 = off; Viviano used σ = 1 on gradient maps, Cohen none): a
Gaussian filter (scipy.ndimage, reflect borders) on the map before every metric below; it runs
on the host (one copy of the blurred batch's maps there and back), every other step on the
maps' device.

Localisation utility (Aggarwal et al. 2020, Appendix B): per image, the AUPRC with the mask as
labels and the map as scores, as average precision AP = Σ_k (R_k − R_{k−1}) P_k over the
distinct score thresholds (sklearn's average_precision_score; tied scores form one threshold).
AP depends only on the order of the scores, so the paper's normalisation changes nothing.

Pointing game (Zhang et al. 2016): hit if the map's maximum lies in L. Ties (our choice): the
top-1 pixel by the rule above, so the hit is the share of maximal pixels inside L, the expected
hit when the tie is broken at random; a constant map scores |L|/HW (chance), never a sure hit.

Relevance mass (Arras et al. 2022): Σ_{L} max(g, 0) / Σ max(g, 0), on the signed map (its
definition; for a non-negative map that is g itself). Undefined (NaN) without positive mass.

Relevance rank accuracy (Arras et al. 2022): the share of the top-|L| pixels inside L, with
ties by expected value as above: |S ∩ L| / |L|.

Which map: IoU/IoP/IoT, localisation utility, pointing game and rank accuracy rank |g| when
``absolute`` (default: magnitude marks the pixels the model uses, whatever the sign), g as
given otherwise; relevance mass always uses max(g, 0).

Images without a region mask or with an empty one are excluded from every metric and counted
("not defined"), never scored as hits. Each metric: the mean over images with a 95% interval,
Student t for the per-image values, Clopper–Pearson for the pointing game's hit rate (a
proportion of images; a tied image's fractional hit counts as its expected value, see
``intervals``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from audit.errors import AuditError
from audit.metrics import host_kernels
from audit.metrics.base import MapBatch, Metric, rows_like, scored_images
from audit.metrics.intervals import mean_interval, proportion_interval
from audit.metrics.tensors import host_maps

TIES = "top-k pixels with ties at the threshold by expected value (random tie break)"
COLUMNS = ("region_iou", "region_iop", "region_iot", "region_auprc", "region_pointing_game",
           "region_relevance_mass", "region_relevance_rank_accuracy")


# The per-row kernels (IoU/IoP/IoT, AP, pointing game, relevance mass) are in ``host_kernels``
# (numpy) and ``device_kernels`` (torch, for maps on a GPU), with the same definitions.


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """AP of one map against its labels (``host_kernels.average_precision_rows``)."""
    row = np.asarray(scores).reshape(1, -1)
    return float(host_kernels.average_precision_rows(row, np.asarray(labels, dtype=bool).reshape(1, -1),
                                                     np.sort(row, axis=1))[0])


class RegionLocalisation(Metric):
    """IoU, IoP, IoT, localisation utility (AUPRC), pointing game, relevance mass and rank
    accuracy against the region mask; each summarised as a mean with a 95% interval.

    blur_sigma: Gaussian blur of the map first (0 = off). absolute: rank |g| (default) or g as
    given. confidence: level of the intervals.
    """

    name = "localisation"

    def __init__(self, blur_sigma: float = 0.0, absolute: bool = True, confidence: float = 0.95) -> None:
        if blur_sigma < 0:
            raise AuditError(f"blur sigma {blur_sigma} is negative; use 0 (off) or e.g. 1")
        self.blur_sigma = blur_sigma
        self.absolute = absolute
        self.confidence = confidence
        self.add_state("paths", [], "cat", dtype=str)
        self.add_state("values", [], "cat")  # (n, 7) rows, columns as ``COLUMNS``
        self.add_state("excluded", {"no_region_mask": 0, "empty_region_mask": 0,
                                    "relevance_mass_without_positive_saliency": 0}, "sum")

    def _values(self, batch: MapBatch, scored: np.ndarray) -> np.ndarray:
        """(E, 7) metric values, columns as ``COLUMNS``, for the E ``scored`` images (non-empty
        masks), where the maps are. The blur runs on the host (scipy.ndimage); blurred maps of a
        GPU batch go back to its device."""
        kernels, saliency = batch.kernels, batch.rows("maps", scored)
        if self.blur_sigma > 0:
            maps = host_maps(saliency).reshape(-1, *batch.region.shape[1:]).astype(np.float64)
            blurred = ndimage.gaussian_filter(maps, (0, self.blur_sigma, self.blur_sigma))
            saliency = rows_like(blurred, batch.maps)
        return kernels.to_host([kernels.localisation_rows(saliency, batch.rows("region", scored), self.absolute)]).reshape(-1, len(COLUMNS))

    def update(self, batch: MapBatch) -> None:
        self.paths.extend(batch.paths)
        values = np.full((len(batch), len(COLUMNS)), math.nan)
        scored = scored_images(batch, self.excluded, "region")
        if scored.any():
            values[scored] = self._values(batch, scored)
        mass = values[scored, COLUMNS.index("region_relevance_mass")]
        self.excluded["relevance_mass_without_positive_saliency"] += int(np.isnan(mass).sum())
        self.values.extend(values)

    def _columns(self) -> dict[str, np.ndarray]:
        table = np.asarray(self.values, dtype=np.float64).reshape(-1, len(COLUMNS))
        return dict(zip(COLUMNS, table.T))

    def compute(self) -> dict:
        """Per metric a summary from ``intervals`` (the pointing game a proportion, the others
        means), with the run's settings and the excluded images by reason."""
        summaries = {}
        for name, values in self._columns().items():
            summarise = proportion_interval if name == "region_pointing_game" else mean_interval
            summaries[name.removeprefix("region_")] = summarise(np.asarray(values), self.confidence)
        return {
            "name": self.name,
            "blur_sigma": self.blur_sigma,
            "ties": TIES,
            "map": "absolute value |g|" if self.absolute else "as given (signed)",
            "n_images": len(self.values),
            "excluded": dict(self.excluded),
            **summaries,
        }

    def per_image(self) -> dict[str, list]:
        return {name: values.tolist() for name, values in self._columns().items()}
