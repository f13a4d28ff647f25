"""x_masked of Viviano et al. (2019), section 3: keep a region, scramble everything else.

``--regions``: the kept region is the region mask (already grown by the blur rule when the
dataset is opened with ``mask_blur``: blur with σ, divide by the maximum, keep > 0), and every
pixel outside it is *scrambled*. ``--masks``: the artefact mask (grown the same way) is
scrambled and everything else kept. Scrambled pixels are randomly permuted among themselves
(spatial information destroyed, the intensity distribution kept), each pixel moving with all
its channels, from a seeded ``torch.Generator``. An image without a mask file has
``has_mask = False``: it is left unchanged and takes no penalty.
"""

from __future__ import annotations

import numpy as np
import torch

from audit.data.batch import Batch
from audit.errors import AuditError

MODES = ("regions", "masks")


def scrambled_pixels(batch: Batch, mode: str, selected: set[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, H, W) bool pixels to scramble and (N,) bool ``has_mask`` for a batch.

    ``selected``: paths whose masks are used (``--mask-fraction``); None uses every mask.
    """
    if mode == "regions":
        scrambled, has_mask = ~batch.region, batch.has_region.copy()
    elif mode == "masks":
        scrambled, has_mask = batch.artefact.copy(), batch.has_artefact.copy()
    else:
        raise AuditError(f"mask mode {mode!r}: use one of {', '.join(MODES)}")
    if selected is not None:
        has_mask &= np.array([path in selected for path in batch.paths], dtype=bool)
    scrambled[~has_mask] = False
    return torch.from_numpy(np.ascontiguousarray(scrambled)), torch.from_numpy(has_mask)


def permute_scrambled(x: torch.Tensor, scrambled: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """x_masked: in each image, the ``scrambled`` pixels permuted among themselves.

    x: (N, C, H, W); scrambled: (N, H, W) bool. One seed is drawn from ``generator`` per call
    (so a checkpointed generator state resumes the same sequence); numpy permutes each image's
    scrambled positions (O(k) per image, against a sort of every pixel), and one gather moves
    the pixels with all their channels, on x's device; the result has x's strides.
    """
    n, channels, height, width = x.shape
    size = height * width
    rng = np.random.default_rng(int(torch.randint(0, 1 << 62, (1,), generator=generator)))
    flat_scrambled = scrambled.reshape(n, size).cpu().numpy()
    source = np.tile(np.arange(size), (n, 1))
    for row, mask in zip(source, flat_scrambled):
        positions = np.flatnonzero(mask)
        row[positions] = rng.permutation(positions)
    index = torch.from_numpy(source).to(x.device)[:, None].expand(-1, channels, -1)
    permuted = x.reshape(n, channels, size).gather(2, index).reshape_as(x)
    # In x's memory layout (images come channels-last from NHWC arrays): the convolutions of
    # the masked half then take the same kernels as those of x (measured: 25% slower otherwise).
    return torch.empty_like(x).copy_(permuted)


def select_masks(paths_with_masks: list[str], fraction: float, seed: int) -> set[str] | None:
    """The images whose masks are used with ``--mask-fraction`` (paper Appendix A): a seeded
    random ``round(fraction · M)`` of the M training images that have one (at least one)."""
    if not 0 < fraction <= 1:
        raise AuditError(f"--mask-fraction {fraction}: give a fraction in (0, 1]")
    if fraction == 1:
        return None
    keep = max(1, round(fraction * len(paths_with_masks)))
    order = np.random.default_rng(seed).permutation(len(paths_with_masks))[:keep]
    return {paths_with_masks[i] for i in order}
