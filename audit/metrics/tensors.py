"""Maps as a method gives them (a torch tensor on its device, or numpy from a plugin), and the
helpers the metric kernels share.

Row sums are sequential (``row_sums``: the last element of a cumulative sum), so that an image's
sums are the same whatever batch it arrives in: a reduction's order depends on the batch shape
and the thread count (CPU) or launch configuration (CUDA), a sequential scan along a row does
not. Sums are in float64; for E rows of N float32 values the difference from a pairwise sum is
of order √N·2⁻⁵³ relative.
"""

from __future__ import annotations

import numpy as np
import torch

Maps = np.ndarray | torch.Tensor


def as_tensor(values: Maps, device: torch.device | None = None) -> torch.Tensor:
    """``values`` as a tensor (a numpy array is wrapped without a copy), on ``device`` if given."""
    tensor = values if isinstance(values, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(values))
    return tensor.detach().to(device) if device is not None else tensor.detach()


def as_rows(values: Maps, dtype: torch.dtype | None = None, device: torch.device | None = None) -> torch.Tensor:
    """(E, ...) → (E, N) tensor, converted to ``dtype`` when given."""
    tensor = as_tensor(values, device)
    tensor = tensor.reshape(len(tensor), -1)
    return tensor.to(dtype) if dtype is not None else tensor


def row_sums(values: torch.Tensor) -> torch.Tensor:
    """(E,) sequential sum of each row of (E, N) values (N >= 1), the same for a row in any batch."""
    return values.cumsum(dim=1)[:, -1]


def host_maps(maps: Maps) -> np.ndarray:
    """(N, H, W) float32 numpy maps from a method's tensor or numpy maps (one copy to the host)."""
    if isinstance(maps, torch.Tensor):
        return maps.detach().to(torch.float32).cpu().numpy()
    return np.asarray(maps, dtype=np.float32)


def all_finite(maps: Maps) -> bool:
    """Whether every value of the maps is finite (on the maps' device)."""
    if isinstance(maps, torch.Tensor):
        return bool(torch.isfinite(maps).all())
    return bool(np.isfinite(maps).all())
