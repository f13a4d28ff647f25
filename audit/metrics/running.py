"""Running mean and variance over a stream of arrays, in O(1) memory."""

from __future__ import annotations

import math

import numpy as np


class RunningMoments:
    """Count, mean and sum of squared deviations (M2), merged chunk by chunk.

    Chan et al.'s pairwise update: for a chunk with n_b values, mean_b and M2_b,
    δ = mean_b − mean; mean += δ·n_b/n; M2 += M2_b + δ²·n·n_b/n (n the new count).
    Numerically stable (no sum of squares minus square of sums). Feeding the same chunks in the
    same order gives bit-identical results, so metrics feed one image at a time.
    """

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64).ravel()
        n_b = values.size
        if n_b == 0:
            return
        mean_b = float(values.mean())
        m2_b = float(np.sum((values - mean_b) ** 2))
        total = self.count + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / total
        self.m2 += m2_b + delta * delta * self.count * n_b / total
        self.count = total

    @property
    def std(self) -> float:
        """Population standard deviation (ddof = 0); NaN before any value."""
        return math.sqrt(self.m2 / self.count) if self.count else math.nan
