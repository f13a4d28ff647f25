"""How sure a fine-tuning comparison is: bootstrap intervals over images for one seed, the
spread and a t-interval over seeds for several.

One seed (our choice, documented in the README): a paired, class-stratified percentile
bootstrap over the report images. Each of ``RESAMPLES`` resamples draws, within each class,
as many images as the class has, with replacement; both arms are scored on the same resampled
images, so the interval of a difference accounts for the images the two share (Efron &
Tibshirani 1993, ch. 13). Stratifying keeps both classes in every resample, so AUROC is always
defined. The interval is the 2.5th and 97.5th percentiles of the resampled statistic.

Several seeds: the spread is the sample standard deviation of the per-seed values, and the
interval of the mean is Student's t with n − 1 degrees of freedom.

A change is "detectable" when its interval excludes 0.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy import stats

from audit.metrics.intervals import mean_interval

RESAMPLES = 2000
CONFIDENCE = 0.95


def stratified_resamples(labels: np.ndarray, seed: int, resamples: int = RESAMPLES) -> np.ndarray:
    """(resamples, n) indices: each row resamples every class with replacement, to its own size."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    rows = np.empty((resamples, len(labels)), dtype=np.int64)
    start = 0
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        rows[:, start : start + len(members)] = rng.choice(members, size=(resamples, len(members)))
        start += len(members)
    return rows


def percentile_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The central ``confidence`` interval of the finite values; None when there are none."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap(statistic: Callable[[np.ndarray], np.ndarray], labels: np.ndarray, seed: int,
              resamples: int = RESAMPLES, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Percentile interval of ``statistic(rows)``, which maps (resamples, n) image indices to
    one value per resample, over class-stratified resamples of the images."""
    return percentile_interval(statistic(stratified_resamples(labels, seed, resamples)), confidence)


def resampled_auroc(labels: np.ndarray, probabilities: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """AUROC (as ``metrics.performance.auroc``) of every resample ``rows`` of the images at
    once: for two classes the Mann–Whitney form with mid-ranks, (R₁ − n₁(n₁+1)/2) / (n₁n₀),
    which equals the ROC area with ties counted ½; otherwise the macro one-vs-rest mean."""
    labels = np.asarray(labels)
    classes = [1] if probabilities.shape[1] == 2 else list(range(probabilities.shape[1]))
    areas = []
    for k in classes:
        positive = labels[rows] == k
        n1 = positive.sum(axis=1)
        n0 = rows.shape[1] - n1
        ranks = stats.rankdata(probabilities[rows, k], axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            areas.append(((ranks * positive).sum(axis=1) - n1 * (n1 + 1) / 2) / (n1 * n0))
    return np.nanmean(np.stack(areas), axis=0) if len(areas) > 1 else areas[0]


def t_interval(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Student-t interval of the mean of per-seed values (``metrics.intervals.mean_interval``);
    None for fewer than two."""
    summary = mean_interval(np.array([math.nan if v is None else v for v in values], dtype=np.float64), confidence)
    return None if summary["ci_low"] is None else (summary["ci_low"], summary["ci_high"])


def direction(interval: tuple[float, float] | None) -> int:
    """+1 when the interval lies above 0, −1 below, 0 when it covers 0 or is missing."""
    if interval is None:
        return 0
    low, high = interval
    return 1 if low > 0 else -1 if high < 0 else 0
