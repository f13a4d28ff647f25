"""Resize an image to the model's input size: bilinear, anti-aliased when shrinking.

The resampling is Pillow's ``BILINEAR`` filter on float32 ("F" mode) channels: a triangle
filter centred on each output pixel's centre, ``x_src = (x_dst + 0.5) · scale − 0.5``, whose
support widens by ``scale`` when shrinking (so every source pixel contributes; the
anti-aliasing), with weights renormalised at the border (edge pixels are not mirrored). This
is our choice and it is deliberate: it is the resize that torchvision's ``Resize`` applies to
PIL images and that ``torch.nn.functional.interpolate(..., antialias=True)`` reproduces, i.e.
the preprocessing most classifiers were trained with. Values are computed in float, never
rounded to 8 bits.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, C) float32 → (size[0], size[1], C) float32, each channel resized on its own."""
    height, width = size
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(image[:, :, c], dtype=np.float32), mode="F").resize((width, height), Image.BILINEAR))
        for c in range(image.shape[2])
    ]
    return np.stack(channels, axis=2)
