"""Summaries with 95% confidence intervals, JSON-ready; each names its method in "interval".

Our choices (the papers show "95% CI" error bars without saying how):

Means of continuous per-image values (saliency, enrichment, IoU, probability changes): the
Student t-interval ("student-t"),

    mean ± t_{(1+c)/2, n−1} · s / √n,   s = sample standard deviation (ddof = 1),

which assumes the mean is roughly normal (fine for the tens to thousands of images audited).

Proportions of images (accuracy, the share of predictions an ablation leaves unchanged, the
pointing game's hit rate): the Clopper–Pearson interval ("clopper-pearson"), with k hits of n,

    low = B⁻¹((1−c)/2; k, n−k+1)  (0 when k = 0),   high = B⁻¹((1+c)/2; k+1, n−k)  (1 when k = n),

B⁻¹ the beta quantile (Clopper and Pearson 1934; scipy's ``binomtest(k, n).proportion_ci(
method="exact")``). It covers the true share with at least the stated confidence for every
share and n; the t-interval collapses to a point when every image agrees (0 of 30 changed:
0%–0%) while Clopper–Pearson gives 0%–11.6%. Per-image values in [0, 1] that are not 0 or 1
(the pointing game scores a tie at the maximum by its expected hit) enter as their sum k = Σ hᵢ,
a non-integer count for which the beta quantiles above are still defined (and increase with
k); a value in [0, 1] with mean μ has variance at most μ(1 − μ), that of a 0/1 hit, so the
interval is no narrower than the hits' spread calls for.

NaN values (undefined for that image) are dropped before summarising.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

T_INTERVAL = "student-t"
BINOMIAL_INTERVAL = "clopper-pearson"


def json_number(value: float) -> float | None:
    """A Python float, or None for NaN/inf (JSON has no NaN)."""
    value = float(value)
    return value if math.isfinite(value) else None


def _defined(values: np.ndarray, method: str, confidence: float) -> tuple[np.ndarray, dict]:
    """The non-NaN values and an empty summary for them (with a reason when there are none)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    result: dict = {"n": int(values.size), "mean": None, "ci_low": None, "ci_high": None,
                    "confidence": confidence, "interval": method}
    if values.size == 0:
        result["reason"] = "no image with a defined value"
    return values, result


def mean_interval(values: np.ndarray, confidence: float = 0.95) -> dict:
    """{"n", "mean", "std", "ci_low", "ci_high", "confidence", "interval"}: the Student
    t-interval on the mean; None + "reason" where undefined."""
    values, result = _defined(values, T_INTERVAL, confidence)
    result["std"] = None
    n = values.size
    if n == 0:
        return result
    mean = float(values.mean())
    result["mean"] = json_number(mean)
    if n == 1:
        result["reason"] = "one image: no spread, no interval"
        return result
    std = float(values.std(ddof=1))
    half_width = stats.t.ppf((1 + confidence) / 2, n - 1) * std / math.sqrt(n)
    result.update(std=json_number(std), ci_low=json_number(mean - half_width),
                  ci_high=json_number(mean + half_width))
    return result


def clopper_pearson(hits: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """(low, high) for ``hits`` of ``n`` (0 <= hits <= n, hits may be fractional)."""
    hits = min(max(float(hits), 0.0), float(n))
    alpha = 1.0 - confidence
    low = 0.0 if hits == 0 else float(stats.beta.ppf(alpha / 2, hits, n - hits + 1))
    high = 1.0 if hits == n else float(stats.beta.ppf(1 - alpha / 2, hits + 1, n - hits))
    return low, high


def proportion_interval(values: np.ndarray, confidence: float = 0.95) -> dict:
    """{"n", "mean", "ci_low", "ci_high", "confidence", "interval"}: the share of per-image
    values in [0, 1] (hits) with the Clopper–Pearson interval on their sum; None + "reason"
    without a defined value."""
    values, result = _defined(values, BINOMIAL_INTERVAL, confidence)
    if values.size == 0:
        return result
    hits = float(values.sum())
    low, high = clopper_pearson(hits, values.size, confidence)
    result.update(mean=json_number(hits / values.size), ci_low=low, ci_high=high)
    return result
