"""RISE (Petsiuk, Das & Saenko 2018, "RISE: Randomized Input Sampling for Explanation of
Black-box Models"), registered as ``rise`` through the ``audit.methods`` entry point."""

from __future__ import annotations

import math
from typing import ClassVar, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from audit.errors import AuditError
from audit.models.classifier import Classifier
from audit.saliency import SaliencyMethod

__all__ = ["Rise"]


class Rise(SaliencyMethod):
    """S(x) = (1 / (N·p)) Σ_i P_t(x ⊙ M_i) · M_i, the Monte Carlo estimate of E[P_t(x ⊙ M) M] / p.

    Each mask M_i: an s×s grid of Bernoulli(p) cells, upsampled bilinearly to (s+1)·⌈H/s⌉ ×
    (s+1)·⌈W/s⌉ and cropped to H×W at a random shift of less than one cell. P_t is the
    classifier's probability of the target (softmax; sigmoid for multilabel models), as in the
    paper. Masking multiplies the normalised input, so a masked pixel is the normalisation mean.
    One map per image, non-negative, no channel reduction needed (masks are shared by all
    channels). Forward-only: runs on ``model.logits``, ``batch_size`` masked images per pass.
    The masks depend only on ``seed`` and the image size, so every image and batch gets the same.
    """

    forward_only: ClassVar[bool] = True

    option_help: ClassVar[dict[str, str]] = {
        "masks": "random masks per image (one forward pass each, batch_size at a time)",
        "cells": "cells per side of the mask grid (s)",
        "p": "probability that a cell is kept",
        "seed": "seed of the masks (every image gets the same)",
        "batch_size": "masked images per forward pass"}

    def passes(self, shape: tuple[int, int, int]) -> int:
        return self.masks

    def __init__(
        self,
        *,
        masks: int = 4000,
        cells: int = 7,
        p: float = 0.5,
        seed: int = 0,
        batch_size: int = 64,
    ) -> None:
        if masks < 1 or cells < 1 or batch_size < 1:
            raise AuditError(
                f"rise: masks, cells and batch_size must be at least 1, got {masks}, {cells}, "
                f"{batch_size}"
            )
        if not 0 < p <= 1:
            raise AuditError(f"rise: p must be in (0, 1], got {p}; the paper uses 0.5")
        self.masks, self.cells, self.p, self.seed = masks, cells, p, seed
        self.batch_size = batch_size

    def cell_size(self, height: int, width: int) -> tuple[int, int]:
        return math.ceil(height / self.cells), math.ceil(width / self.cells)

    def draw_grids(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The random part: (N, s, s) binary grids and (N, 2) shifts (rows, columns) in cells."""
        generator = torch.Generator().manual_seed(self.seed)
        grids = (torch.rand(self.masks, self.cells, self.cells, generator=generator) < self.p)
        cell_h, cell_w = self.cell_size(height, width)
        shift_rows = torch.randint(0, cell_h, (self.masks,), generator=generator)
        shift_cols = torch.randint(0, cell_w, (self.masks,), generator=generator)
        return grids.float(), torch.stack([shift_rows, shift_cols], dim=1)

    def masks_from(
        self, grids: torch.Tensor, shifts: torch.Tensor, height: int, width: int
    ) -> torch.Tensor:
        """(B, s, s) grids and (B, 2) shifts → (B, H, W) masks in [0, 1]."""
        cell_h, cell_w = self.cell_size(height, width)
        size = ((self.cells + 1) * cell_h, (self.cells + 1) * cell_w)
        upsampled = F.interpolate(grids[:, None], size=size, mode="bilinear", align_corners=False)
        crops = [
            upsampled[i, 0, row : row + height, col : col + width]
            for i, (row, col) in enumerate(shifts.tolist())
        ]
        return torch.stack(crops)

    def mask_batches(self, height: int, width: int) -> Iterator[torch.Tensor]:
        """All N masks, ``batch_size`` at a time."""
        grids, shifts = self.draw_grids(height, width)
        for start in range(0, self.masks, self.batch_size):
            stop = start + self.batch_size
            yield self.masks_from(grids[start:stop], shifts[start:stop], height, width)

    @torch.no_grad()
    def attribute(self, model: Classifier, x: torch.Tensor, target: torch.Tensor) -> np.ndarray:
        x = x.detach()
        n, _, height, width = x.shape
        saliency = torch.zeros(n, height, width, dtype=torch.float64, device=x.device)
        for masks in self.mask_batches(height, width):
            masks = masks.to(x.device)
            for i in range(n):
                probabilities = model.probabilities(model.logits(x[i] * masks[:, None]))
                weights = probabilities[:, int(target[i])].to(masks.dtype)
                saliency[i] += torch.einsum("b,bhw->hw", weights, masks).double()
        return (saliency / (self.masks * self.p)).cpu().numpy().astype(np.float32)
