"""The k highest pixels of a map, with ties at the threshold by expected value (our rule).

Pfau's peak share n(X) and the binarised IoU/IoP/IoT keep the top k pixels of a map. When
several pixels share the k-th largest value t, "every pixel >= t" can keep far more than k (a
map that is zero off a few strokes keeps the whole image once t = 0) and "the first k in raster
order" depends on where the pixels are. We keep exactly k pixels of mass instead:

    w_i = 1                                 if s_i > t
    w_i = (k − #{s > t}) / #{s = t}         if s_i = t
    w_i = 0                                 otherwise,

so Σ w_i = k, and w_i is the probability that pixel i is kept when the tie at t is broken
uniformly at random. For a mask L the kept set S then has |S| = k and |S ∩ L| = Σ_{i ∈ L} w_i,
the expected sizes under a random tie break (without ties at t the sets are the usual ones).
A constant map keeps every pixel with weight k/HW, so |S ∩ L| / k = |L|/HW: chance, whatever
the positions.

Maps come as rows (E, N); the threshold t of each row comes from a sort (``kth_largest``,
one sort per map shared by every metric of the batch) or a partition. These are the host's
(numpy) functions; ``device_kernels`` has the same rule in torch for maps on a GPU.
"""

from __future__ import annotations

import numpy as np


def count(selected: np.ndarray) -> np.ndarray:
    """(E,) int64 number of True per row (ratios of counts come out float64)."""
    return np.count_nonzero(selected, axis=1)


def kth_largest(ascending: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(E, 1) the counts-th largest value of each ascending row (1 <= counts <= N)."""
    return ascending[np.arange(len(ascending)), ascending.shape[1] - counts][:, None]


def kept_inside(scores: np.ndarray, threshold: np.ndarray, counts: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(E,) float64 |S ∩ L| = Σ_{i ∈ L} w_i of the top ``counts`` pixels of each row of
    ``scores``, whose counts-th largest value is ``threshold`` (E, 1) (weights as in the module
    docstring); ``mask`` (E, N) bool is the set L."""
    above, tied = scores > threshold, scores == threshold
    return count(above & mask) + (counts - count(above)) * (count(tied & mask) / count(tied))
