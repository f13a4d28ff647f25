"""Token sequences as patch grids: the layouts a transformer layer's activations come in.

A vision transformer cuts an H × W image into an h × w grid of patches and prepends k extra
tokens (ViT: the class token, k = 1; DeiT: class and distillation tokens, k = 2; a model that
pools its patch tokens: k = 0). A sequence of T tokens is read as that grid by one rule (ours):

    T − k = h · w  with  h / w = H / W  (h · W = w · H),  k ∈ {0, 1, 2},

the k extra tokens first. At most one (k, h, w) fits: with H/W = a/b in lowest terms the grid
sizes are a·b·m² (h = a·m, w = b·m), and consecutive ones differ by a·b·(2m + 1) ≥ 3. None (a
pooled or windowed sequence) is a one-line error that asks for another layer. Layouts of a
layer's output (N, …):

- ``channels``: (N, C, h, w), a convolution's feature map (kept as it is);
- ``tokens``: (N, T, D), a ViT block's tokens; the k extra tokens are dropped, the rest
  reshaped row-major to (N, D, h, w);
- ``channels-last``: (N, h, w, C), a Swin-style stage; permuted to (N, C, h, w). A 4-D output is
  channels-first unless only its dims 1, 2 (not 2, 3) have the image's aspect ratio.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from audit.errors import AuditError

EXTRA_TOKENS = (0, 1, 2)
CHANNELS, TOKENS, CHANNELS_LAST = "channels", "tokens", "channels-last"


@dataclass(frozen=True)
class Grid:
    """How a layer's (N, …) output becomes (N, C, h, w): its ``layout``, the ``extra`` tokens
    dropped from the front (tokens only) and the grid ``height`` × ``width``."""

    layout: str
    extra: int
    height: int
    width: int

    def to_map(self, activation: torch.Tensor) -> torch.Tensor:
        """(N, …) → (N, C, h, w) as the module docstring says."""
        if self.layout == TOKENS:
            n, _, d = activation.shape
            return activation[:, self.extra:].reshape(n, self.height, self.width, d).permute(0, 3, 1, 2)
        if self.layout == CHANNELS_LAST:
            return activation.permute(0, 3, 1, 2)
        return activation


def _has_ratio(h: int, w: int, size: tuple[int, int]) -> bool:
    return h * size[1] == w * size[0]


def token_grid(tokens: int, size: tuple[int, int]) -> tuple[int, int, int]:
    """(k, h, w) with ``tokens`` − k = h·w and h/w = H/W for the input ``size`` (H, W), k ∈ {0, 1, 2}
    (at most one fits, module docstring); AuditError when none does."""
    fits = [(k, h, (tokens - k) // h) for k in EXTRA_TOKENS for h in range(1, tokens - k + 1)
            if (tokens - k) % h == 0 and _has_ratio(h, (tokens - k) // h, size)]
    if not fits:
        raise AuditError(f"{tokens} tokens are not a patch grid of the {size[0]}×{size[1]} input with 0–2 extra "
                         f"tokens in front")
    return fits[0]


def grid_of(shape: tuple[int, ...], size: tuple[int, int]) -> Grid:
    """The ``Grid`` of a layer output of ``shape`` (N, …) for an input of ``size`` (H, W);
    AuditError for other ranks or token counts that fit no grid."""
    if len(shape) == 4:
        if not _has_ratio(shape[2], shape[3], size) and _has_ratio(shape[1], shape[2], size):
            return Grid(CHANNELS_LAST, 0, shape[1], shape[2])
        return Grid(CHANNELS, 0, shape[2], shape[3])
    if len(shape) == 3:
        extra, height, width = token_grid(shape[1], size)
        return Grid(TOKENS, extra, height, width)
    raise AuditError(f"a {len(shape)}-D output {tuple(shape)} is neither (N, C, H, W) feature maps, (N, H, W, C) "
                     f"nor (N, T, D) tokens")


def map_shape(shape: tuple[int, ...], grid: Grid) -> tuple[int, int, int]:
    """(C, h, w) of the map ``grid`` makes from an output of ``shape``."""
    channels = shape[1] if grid.layout == CHANNELS else shape[-1]
    return channels, grid.height, grid.width
