"""Running mean and variance over a stream of arrays, in O(1) memory, with an exact pairwise merge."""

from __future__ import annotations

import math

import numpy as np


class RunningMoments:
    """Count, mean and sum of squared deviations (M2), merged chunk by chunk.

    Chan et al.'s pairwise combine of two sets a and b (``merge``):
    δ = mean_b − mean_a; n = n_a + n_b; mean = mean_a + δ·n_b/n; M2 = M2_a + M2_b + δ²·n_a·n_b/n.
    Exact in exact arithmetic and numerically stable (no sum of squares minus square of sums);
    ``add`` merges a chunk's own moments. Feeding the same chunks in the same order gives
    bit-identical results, so metrics keep one image's moments per image and fold them in order.
    """

    def __init__(self, count: int = 0, mean: float = 0.0, m2: float = 0.0) -> None:
        self.count = count
        self.mean = mean
        self.m2 = m2

    @classmethod
    def of(cls, values: np.ndarray) -> RunningMoments:
        """The moments of one chunk of values."""
        values = np.asarray(values, dtype=np.float64).ravel()
        if values.size == 0:
            return cls()
        mean = float(values.mean())
        return cls(values.size, mean, float(np.sum((values - mean) ** 2)))

    def merge(self, other: RunningMoments) -> None:
        """Combine ``other``'s moments into these (Chan et al., above)."""
        if other.count == 0:
            return
        total = self.count + other.count
        delta = other.mean - self.mean
        self.mean += delta * other.count / total
        self.m2 += other.m2 + delta * delta * self.count * other.count / total
        self.count = total

    def add(self, values: np.ndarray) -> None:
        self.merge(RunningMoments.of(values))

    @property
    def std(self) -> float:
        """Population standard deviation (ddof = 0); NaN before any value."""
        return math.sqrt(self.m2 / self.count) if self.count else math.nan
