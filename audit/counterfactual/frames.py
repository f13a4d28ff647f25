"""Frames of a Latent Shift explanation as pictures: the original beside x_λ, on one colour scale
for all frames of the image (so brightness changes are real, not rescaling), enlarged with nearest
neighbour, with the class, prediction and λ drawn above each frame (Cohen et al. 2021, §3)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BAND = 14  # pixels of caption above each frame


def colour_scale(*arrays: np.ndarray) -> tuple[float, float]:
    """One (low, high) for every array given: their joint min and max (high > low)."""
    low = min(float(a.min()) for a in arrays)
    high = max(float(a.max()) for a in arrays)
    return low, max(high, low + 1e-6)


def to_rgb(image: np.ndarray, scale: tuple[float, float], zoom: int) -> np.ndarray:
    """(C, H, W) on ``scale`` → (zoom·H, zoom·W, 3) uint8 (grey images repeated over RGB)."""
    low, high = scale
    pixels = np.clip((image - low) / (high - low), 0, 1)
    pixels = np.repeat(pixels, 3, axis=0) if pixels.shape[0] == 1 else pixels[:3]
    pixels = (pixels.transpose(1, 2, 0) * 255).round().astype(np.uint8)
    return pixels.repeat(zoom, axis=0).repeat(zoom, axis=1)


def zoom_for(height: int, minimum: int = 112) -> int:
    """An integer enlargement that makes ``height`` at least ``minimum`` pixels."""
    return max(1, -(-minimum // height))


def render(
    original: np.ndarray,
    frames: np.ndarray,
    predictions: np.ndarray,
    lambdas: np.ndarray,
    label: str,
) -> list[Image.Image]:
    """One picture per frame: [x | x_λ] with ``label p=… lambda=…`` above; all on one colour scale."""
    scale = colour_scale(original, frames)
    zoom = zoom_for(original.shape[1])
    left = to_rgb(original, scale, zoom)
    font = ImageFont.load_default()
    pictures = []
    for frame, p, lam in zip(frames, predictions, lambdas):
        pair = np.concatenate([left, np.full((left.shape[0], 2, 3), 128, np.uint8), to_rgb(frame, scale, zoom)], axis=1)
        canvas = Image.new("RGB", (pair.shape[1], pair.shape[0] + BAND), "white")
        canvas.paste(Image.fromarray(pair), (0, BAND))
        ImageDraw.Draw(canvas).text((2, 1), f"{label} p={p:.2f} lambda={lam:.3g}", fill="black", font=font)
        pictures.append(canvas)
    return pictures
