"""Write a Latent Shift explanation as a GIF (the frames reversed, then forward, as in the
gifsplanation code: the feature fades out and back in) and as a PNG strip of frames."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from audit.counterfactual.storage import atomic_write


def write_gif(pictures: list[Image.Image], path: Path, frame_ms: int = 150) -> None:
    """Pictures in ascending λ → GIF playing them in descending λ, then ascending, looping."""
    sequence = pictures[::-1] + pictures
    buffer = io.BytesIO()
    sequence[0].save(buffer, format="GIF", save_all=True, append_images=sequence[1:], duration=frame_ms, loop=0)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def write_strip(pictures: list[Image.Image], path: Path) -> None:
    """Pictures side by side, left to right in ascending λ, 4 white pixels apart, as one PNG."""
    width = sum(p.width + 4 for p in pictures) - 4
    strip = Image.new("RGB", (width, max(p.height for p in pictures)), "white")
    x = 0
    for picture in pictures:
        strip.paste(picture, (x, 0))
        x += picture.width + 4
    buffer = io.BytesIO()
    strip.save(buffer, format="PNG")
    atomic_write(path, lambda f: f.write(buffer.getvalue()))
