"""Channel reductions: (N, C, H, W) attributions → (N, H, W) float32 maps, on the attribution's
device (the metrics run there; ``audit.metrics.tensors.host_maps`` copies them to the host)."""

from __future__ import annotations

import torch


def max_abs_over_channels(attribution: torch.Tensor) -> torch.Tensor:
    """max_c |a_c| per pixel (Simonyan et al. 2014), for unsigned gradient maps."""
    return attribution.detach().abs().amax(dim=1).float()


def sum_over_channels(attribution: torch.Tensor) -> torch.Tensor:
    """Σ_c a_c per pixel, for signed maps (keeps completeness-style sums)."""
    return attribution.detach().sum(dim=1).float()
