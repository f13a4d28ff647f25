"""What the data stage hands to the rest of the pipeline, one batch at a time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Batch:
    """N images at the model's input size, with their masks.

    images: (N, H, W, C) float32 in [0, 1]. labels: (N,) int64, -1 where unknown.
    artefact / region: (N, H, W) bool (an image without a mask file has an all-False mask).
    has_artefact / has_region: (N,) bool, whether a mask file was found for the image.
    paths: the images' paths relative to the dataset root (used as ids everywhere).
    """

    paths: list[str]
    labels: np.ndarray
    images: np.ndarray
    artefact: np.ndarray
    region: np.ndarray
    has_artefact: np.ndarray
    has_region: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)
