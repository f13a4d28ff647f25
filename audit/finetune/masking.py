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

    x: (N, C, H, W); scrambled: (N, H, W) bool. Vectorised, one sort per batch: sorting random
    integer keys of the scrambled pixels (in [0, 2^30); kept pixels get 2^30 + position, so
    they sort last, in place) gives a random order of the scrambled positions; a running count
    lists the same positions in order (scrambled first, then kept); pixel j of the first list
    moves to position j of the second.
    """
    n, channels, height, width = x.shape
    size = height * width
    flat_scrambled = scrambled.reshape(n, size)
    position = torch.arange(size, dtype=torch.int32).expand(n, -1)
    keys = torch.randint(0, 1 << 30, (n, size), generator=generator, dtype=torch.int32)
    source = torch.where(flat_scrambled, keys, (1 << 30) + position).argsort(dim=1)
    scrambled_rank = flat_scrambled.cumsum(dim=1) - 1
    kept_rank = flat_scrambled.sum(dim=1, keepdim=True) + (~flat_scrambled).cumsum(dim=1) - 1
    target = torch.empty((n, size), dtype=torch.int64)
    target.scatter_(1, torch.where(flat_scrambled, scrambled_rank, kept_rank), position.long())
    flat = x.reshape(n, channels, size)
    out = torch.empty_like(flat)
    out.scatter_(2, target[:, None].expand(-1, channels, -1), flat.gather(2, source[:, None].expand(-1, channels, -1)))
    return out.reshape_as(x)


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
