"""Pure mask operations: binarise, resize to the model size, dilate, blur-dilate."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from skimage.filters import gaussian
from skimage.morphology import dilation, footprint_rectangle

from audit.errors import AuditError


def binarise(array: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) → (H, W) bool: a pixel is in the mask when any channel is non-zero."""
    return array.any(axis=2) if array.ndim == 3 else array != 0


@lru_cache(maxsize=64)
def nearest_indices(source: int, target: int) -> np.ndarray:
    """Source index of each target pixel's centre: floor((i + 0.5) · source / target) (cached,
    read-only)."""
    indices = np.minimum(((np.arange(target) + 0.5) * source / target).astype(np.int64), source - 1)
    indices.flags.writeable = False
    return indices


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a bool mask (pixel centres, as scikit-image's order=0), so it
    stays binary; plain indexing of rows then columns, ~500x faster than an interpolation call."""
    if mask.shape == tuple(size):
        return mask
    rows, columns = nearest_indices(mask.shape[0], size[0]), nearest_indices(mask.shape[1], size[1])
    return mask[rows][:, columns].astype(bool, copy=False)


def dilate_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Binary dilation by ``pixels`` in every direction (a (2p+1)×(2p+1) square footprint)."""
    if pixels <= 0:
        return mask
    return dilation(mask, footprint_rectangle((2 * pixels + 1, 2 * pixels + 1)))


def blur_mask(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Grow a mask by Gaussian blur, as Viviano et al. (2019) do before masking.

    The rule (paper section 4; reference code): blur the mask with σ, divide by its maximum and
    keep the pixels > 0, so some context around the masked area is kept. Dividing by the
    maximum does not change which pixels are > 0, so only the blur is computed here. The
    kernel is truncated at 4σ (scikit-image's default), so the mask grows by round(4σ) pixels
    along each axis: σ = 0.5 grows a single pixel into a 5×5 square.
    """
    if sigma <= 0:
        return mask
    return gaussian(mask.astype(np.float64), sigma=sigma) > 0


def check_growth(dilate: int, sigma: float, side: int) -> None:
    """Refuse a dilation or blur that cannot mean anything at a model side of ``side`` pixels.

    A dilation by ``side`` pixels, or a blur that grows a mask by round(4σ) ≥ ``side`` pixels,
    already covers the whole image from any masked pixel; larger values only cost memory and
    time (``--mask-dilate 1000000`` would build a 2,000,001² footprint, 3.6 TiB). So the valid
    ranges are: dilation an integer in [0, side], σ a finite number in [0, side / 4].
    """
    if isinstance(dilate, bool) or not isinstance(dilate, (int, np.integer)) or not 0 <= dilate <= side:
        raise AuditError(
            f"--mask-dilate {dilate}: must be an integer from 0 to {side} (the model's input side; "
            f"a larger dilation covers the whole image)"
        )
    if not (math.isfinite(sigma) and 0 <= sigma <= side / 4):
        raise AuditError(
            f"--mask-blur {sigma} (--blur in audit finetune): σ must be a number from 0 to "
            f"{side / 4:g} (σ grows a mask by 4σ pixels, and {side / 4:g} covers the model's "
            f"{side}-pixel side)"
        )
