"""Means with confidence intervals, JSON-ready.

Our choice (the papers show "95% CI" error bars without saying how): the Student t-interval on
the mean of the per-image values,

    mean ± t_{(1+c)/2, n−1} · s / √n,   s = sample standard deviation (ddof = 1),

which assumes the mean is roughly normal (fine for the tens to thousands of images audited).
NaN values (undefined for that image) are dropped before summarising.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

CI_METHOD = "Student t-interval on the mean of per-image values (n - 1 degrees of freedom)"


def json_number(value: float) -> float | None:
    """A Python float, or None for NaN/inf (JSON has no NaN)."""
    value = float(value)
    return value if math.isfinite(value) else None


def mean_interval(values: np.ndarray, confidence: float = 0.95) -> dict:
    """{"n", "mean", "std", "ci_low", "ci_high", "confidence"}; None + "reason" where undefined."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    n = int(values.size)
    result: dict = {"n": n, "mean": None, "std": None, "ci_low": None, "ci_high": None,
                    "confidence": confidence}
    if n == 0:
        result["reason"] = "no image with a defined value"
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
