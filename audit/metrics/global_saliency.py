"""Global saliency on an artefact (Pfau et al. 2019, "Global Saliency: Aggregating Saliency
Maps to Assess Dataset Artefact Bias", Sec. 3, Fig. 1, Appendix C).

Per image X with artefact pixels A(X) and saliency map g = g_f(X) for the explained class
(``--target``; the predicted class by default, as in the paper):

    mean saliency on the artefact   m(X) = (1/|A(X)|) Σ_{(i,j) ∈ A(X)} g_ij          (Eq. 2)
    peak saliency share             n(X) = |P_n(g) ∩ A(X)| / |P_n(g)|                (Eq. 3)

P_n(g) = pixels at or above the n-th percentile of g (n = 98 in the paper). We keep exactly
k = ⌈(1 − n/100)·HW⌉ pixels (the product rounded to 9 decimals first, so that float error in
1 − n/100 does not add a pixel), ties at the threshold by expected value (``top_k``):

    n(X) = Σ_{i ∈ A} w_i / k.

Without ties at the k-th largest value this is the paper's set: P_n holds the pixels at or
above the percentile, HW − ⌈n(HW − 1)/100⌉ of them for numpy's linear percentile, which is k
or one fewer (16 for n = 98 on 28×28, as k; 2 on 10×10, as k). With ties "at or above" keeps
every tied pixel, so a map that is zero off a few strokes keeps the whole image once the
percentile is 0 and n(X) falls to the artefact's area share, whatever the map shows; the
expected value keeps k pixels of mass, the strokes first. A constant map gives |A|/HW (chance).

Normalisation (paper, Fig. 1): z-score per model with the mean μ and standard deviation σ
over all pixels of all images. m is a mean over pixels, so z-scoring commutes with it:
m_z(X) = (m(X) − μ)/σ. μ and σ accumulate as running moments over every image seen (with or
without an artefact mask, labelled or not); σ is the population standard deviation. The state
keeps each image's own (count, mean, M2) and ``compute`` folds them in image order with Chan et
al.'s exact pairwise combine (``RunningMoments.merge``), so merged contiguous shards give the
same μ and σ as one run, bit for bit, and so the same per-image m_z.
n(X) is invariant to positive scaling and shifts, so it needs no normalisation.

Which map: the paper aggregates g as is (signed: competitive gradient ⊙ input has negative
values; its completeness argument, Eq. 1, needs the signed sum), so ``absolute=False`` is the
default; ``absolute=True`` uses |g| for m, n, μ and σ alike.

Images without an artefact mask, or with an empty one, have no m or n: they are excluded from
the summaries and counted. Summaries are per image → overall, per class by label and by
prediction, with 95% t-intervals (see ``intervals``), and the inter-class variance of the
per-label class means (``grouping.inter_class_variance``).
"""

from __future__ import annotations

import math

from types import ModuleType
from typing import Any

import numpy as np
from scipy import stats

from audit.errors import AuditError
from audit.metrics.base import MapBatch, Metric, kernels_for, rows_like, scored_images
from audit.metrics.grouping import summarise
from audit.metrics.intervals import json_number
from audit.metrics.running import RunningMoments
from audit.metrics.tensors import Maps


def mean_on_masks(maps: Maps, masks: Maps) -> np.ndarray:
    """(E,) m per image of (E, H, W) maps and non-empty masks (Pfau Eq. 2), in float64, where
    the maps are (``host_kernels`` / ``device_kernels``)."""
    kernels, flat, inside = _rows(maps, masks)
    return kernels.to_host([kernels.mean_on_rows(kernels.float64(flat), inside)])


def peak_count(pixels: int, percentile: float) -> int:
    """k = ⌈(1 − n/100)·HW⌉ pixels above the n-th percentile of a map of HW pixels (at least 1)."""
    return max(1, math.ceil(round((100.0 - percentile) * pixels / 100.0, 9)))


def peak_shares(maps: Maps, masks: Maps, percentile: float = 98.0) -> np.ndarray:
    """(E,) n = Σ_{i ∈ A} w_i / k per image, the share of the top k pixels on the artefact with
    ties by expected value (Pfau Eq. 3; see the module docstring)."""
    kernels, flat, inside = _rows(maps, masks)
    return kernels.to_host([kernels.peak_on_rows(kernels.float64(flat), inside, peak_count(flat.shape[1], percentile))])


def _rows(maps: Maps, masks: Maps) -> tuple[ModuleType, Any, Any]:
    """The kernels for ``maps`` and the maps and masks as (E, N) rows where the maps are."""
    return kernels_for(maps), rows_like(maps, maps), rows_like(masks, maps)


def mean_on_mask(saliency: np.ndarray, mask: np.ndarray) -> float:
    """m of one map; NaN for an empty mask."""
    return float(mean_on_masks(saliency[None], mask[None])[0]) if mask.any() else math.nan


def peak_share(saliency: np.ndarray, mask: np.ndarray, percentile: float = 98.0) -> float:
    """n of one map."""
    return float(peak_shares(saliency[None], mask[None], percentile)[0])


def levene_between_models(
    values_a: np.ndarray, values_b: np.ndarray, center: str = "median"
) -> dict:
    """Levene's test for equal variance of two models' values (scipy.stats.levene).

    Pfau et al. (Sec. 4) compare inter-class variance between two models with Levene's test
    (W = 1.04, P = 0.33, which matches F(1, 12), i.e. the 7 per-class means of each model);
    pass per-class means to reproduce that, or per-image values for a test with more power.
    ``center="median"`` (scipy's default, Brown–Forsythe) is robust; "mean" is Levene's original.
    NaN values are dropped.
    """
    a = np.asarray(values_a, dtype=np.float64)
    b = np.asarray(values_b, dtype=np.float64)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    result: dict = {"statistic": None, "p_value": None, "n_a": int(a.size), "n_b": int(b.size),
                    "center": center}
    if a.size < 2 or b.size < 2:
        result["reason"] = "Levene's test needs at least two values per model"
        return result
    statistic, p_value = stats.levene(a, b, center=center)
    result.update(statistic=json_number(statistic), p_value=json_number(p_value))
    return result


class GlobalSaliency(Metric):
    """Pfau et al.'s m(X) (z-scored and raw) and n(X), per image, per class and overall.

    percentile: n of the peak share (paper: 98). absolute: use |g| instead of g as given.
    confidence: level of the t-intervals.
    """

    name = "global_saliency"

    def __init__(self, percentile: float = 98.0, absolute: bool = False,
                 confidence: float = 0.95) -> None:
        if not 0.0 < percentile < 100.0:
            raise AuditError(f"peak percentile {percentile} is outside (0, 100); use e.g. 98")
        self.percentile = percentile
        self.absolute = absolute
        self.confidence = confidence
        self.add_state("paths", [], "cat", dtype=str)
        self.add_state("labels", [], "cat", dtype=np.int64)
        self.add_state("predictions", [], "cat", dtype=np.int64)
        self.add_state("mean", [], "cat")
        self.add_state("peak", [], "cat")
        self.add_state("pixel_count", [], "cat", dtype=np.int64)  # each image's own moments
        self.add_state("pixel_mean", [], "cat")
        self.add_state("pixel_m2", [], "cat")
        self.add_state("excluded", {"no_artefact_mask": 0, "empty_artefact_mask": 0}, "sum")

    def update(self, batch: MapBatch) -> None:
        """Per image, where the maps are: its own pixel moments (so that they do not depend on
        the batch size), and m and n where it has an artefact mask; one copy to the host."""
        n, kernels = len(batch), batch.kernels
        flat = kernels.float64(batch.rows("maps", np.ones(n, dtype=bool)))
        if self.absolute:
            flat = abs(flat)
        scored = scored_images(batch, self.excluded)
        columns = [kernels.pixel_moments(flat)]
        if scored.any():
            chosen, inside = flat[batch.rows_index(scored)], batch.rows("artefact", scored)
            k = peak_count(flat.shape[1], self.percentile)
            columns += [kernels.mean_on_rows(chosen, inside), kernels.peak_on_rows(chosen, inside, k)]
        host = kernels.to_host(columns)
        moments = host[: 2 * n].reshape(n, 2)
        mean, peak = np.full(n, math.nan), np.full(n, math.nan)
        if scored.any():
            mean[scored], peak[scored] = np.split(host[2 * n:], 2)
        self.pixel_count.extend([flat.shape[1]] * n)
        self.pixel_mean.extend(moments[:, 0].tolist())
        self.pixel_m2.extend(moments[:, 1].tolist())
        self.paths.extend(batch.paths)
        self.labels.extend(int(label) for label in batch.labels)
        self.predictions.extend(int(p) for p in batch.predictions)
        self.mean.extend(mean.tolist())
        self.peak.extend(peak.tolist())

    @property
    def _pixels(self) -> RunningMoments:
        """μ and σ over every pixel seen: the images' moments folded in order."""
        pixels = RunningMoments()
        for count, mean, m2 in zip(self.pixel_count, self.pixel_mean, self.pixel_m2):
            pixels.merge(RunningMoments(count, mean, m2))
        return pixels

    def _z_scored_mean(self, pixels: RunningMoments) -> np.ndarray:
        if not pixels.std > 0:
            return np.full(len(self.mean), math.nan)
        return (np.asarray(self.mean) - pixels.mean) / pixels.std

    def _normalisation(self, pixels: RunningMoments) -> dict:
        result: dict = {"pixel_mean": json_number(pixels.mean) if pixels.count else None,
                        "pixel_std": json_number(pixels.std), "pixels": pixels.count}
        if not pixels.std > 0:
            result["reason"] = "no saliency seen, or every pixel of every map has the same value"
        return result

    def compute(self) -> dict:
        labels, predictions = np.asarray(self.labels), np.asarray(self.predictions)
        pixels = self._pixels
        normalisation = self._normalisation(pixels)
        if "reason" in normalisation:
            mean_z: dict = {"overall": None, "by_label": None, "by_prediction": None,
                            "inter_class_variance": None, "reason": normalisation["reason"]}
        else:
            mean_z = summarise(self._z_scored_mean(pixels), labels, predictions, self.confidence)
        return {
            "name": self.name,
            "map": "absolute value |g|" if self.absolute else "as given (signed)",
            "percentile": self.percentile,
            "n_images": len(self.mean),
            "n_scored": int(np.count_nonzero(~np.isnan(np.asarray(self.mean, dtype=float)))),
            "excluded": dict(self.excluded),
            "normalisation": normalisation,
            "mean_saliency_z": mean_z,
            "mean_saliency": summarise(np.asarray(self.mean), labels, predictions,
                                       self.confidence),
            "peak_share": summarise(np.asarray(self.peak), labels, predictions, self.confidence),
        }

    def per_image(self) -> dict[str, list]:
        return {
            "artefact_mean_saliency": list(self.mean),
            "artefact_mean_saliency_z": self._z_scored_mean(self._pixels).tolist(),
            "artefact_peak_share": list(self.peak),
        }
