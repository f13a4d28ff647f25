"""2-D attribution maps from a Latent Shift frame sequence (Cohen et al. 2021, §3.2, Appendix B).

``frames`` is (N, F, C, H, W) in ascending λ; ``zero`` the index of the λ = 0 frame x_0 = D(E(x)).
Each map is reduced over channels by the maximum and is non-negative, (N, H, W) float32:

- max:     M = max_λ |x_λ − x_0|         (the paper's best, "latentshift-max")
- mean:    M = mean_λ |x_λ − x_0|        (the public code's "mean")
- minmax:  M = |x_λmin − x_λmax|         (first against last frame)
- sliding: M = mean_t |x_{t+1} − x_t|    ("sliding interval": consecutive frames)
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def _channels(diff: np.ndarray) -> np.ndarray:
    return diff.max(axis=1).astype(np.float32)


def max_map(frames: np.ndarray, zero: int) -> np.ndarray:
    return _channels(np.abs(frames - frames[:, zero : zero + 1]).max(axis=1))


def mean_map(frames: np.ndarray, zero: int) -> np.ndarray:
    return _channels(np.abs(frames - frames[:, zero : zero + 1]).mean(axis=1))


def minmax_map(frames: np.ndarray, zero: int) -> np.ndarray:
    return _channels(np.abs(frames[:, 0] - frames[:, -1]))


def sliding_map(frames: np.ndarray, zero: int) -> np.ndarray:
    return _channels(np.abs(np.diff(frames, axis=1)).mean(axis=1))


MAPS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "max": max_map,
    "mean": mean_map,
    "minmax": minmax_map,
    "sliding": sliding_map,
}
