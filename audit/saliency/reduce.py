"""Channel reductions: (N, C, H, W) attributions → (N, H, W) float32 numpy maps."""

from __future__ import annotations

import numpy as np
import torch


def _to_numpy(maps: torch.Tensor) -> np.ndarray:
    return maps.detach().cpu().numpy().astype(np.float32, copy=False)


def max_abs_over_channels(attribution: torch.Tensor) -> np.ndarray:
    """max_c |a_c| per pixel (Simonyan et al. 2014), for unsigned gradient maps."""
    return _to_numpy(attribution.detach().abs().amax(dim=1))


def sum_over_channels(attribution: torch.Tensor) -> np.ndarray:
    """Σ_c a_c per pixel, for signed maps (keeps completeness-style sums)."""
    return _to_numpy(attribution.detach().sum(dim=1))

