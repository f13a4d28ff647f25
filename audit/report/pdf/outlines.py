"""Mask outlines that stay visible on any image: a colour chosen against the pixels they run
along, a contrasting halo around the line, and a width that survives an 80 dpi rendering.

Colour (our rule): for each mask, the candidate (Okabe–Ito colours, so the pair stays
colour-blind safe) farthest in RGB from the median colour of the pixels under that mask's
outlines over all images of the figure; the two masks never get the same colour. One choice per
figure, so that its legend holds for every cell. A red ink mark then gets a yellow or purple
outline instead of the vermilion one that vanished on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.colors import to_rgb
from scipy.ndimage import binary_dilation, binary_erosion

#: (name, hex) in order of preference
ARTEFACT_CANDIDATES = (("vermilion", "#D55E00"), ("yellow", "#F0E442"), ("reddish purple", "#CC79A7"), ("white", "#FFFFFF"))
REGION_CANDIDATES = (("sky blue", "#56B4E9"), ("bluish green", "#009E73"), ("blue", "#0072B2"), ("white", "#FFFFFF"))
#: outline width as a share of the picture's side: 1/56 of a 224-pixel cell is 4 pixels, about
#: 1.5 pixels of a 1.2-inch cell at 80 dpi (the former 2 pixels vanished below 150 dpi)
WIDTH_SHARE = 1 / 56


def rgb(hex_colour: str) -> np.ndarray:
    return np.array(to_rgb(hex_colour))


def as_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1) or (H, W, C ≥ 3) in [0, 1] → (H, W, 3) float."""
    picture = np.clip(np.asarray(image, dtype=float), 0, 1)
    picture = picture[..., None] if picture.ndim == 2 else picture
    return np.repeat(picture, 3, axis=-1) if picture.shape[-1] == 1 else picture[..., :3]


def edge(mask: np.ndarray) -> np.ndarray:
    """The mask's own border pixels (inside it)."""
    mask = np.asarray(mask, dtype=bool)
    return mask & ~binary_erosion(mask, border_value=0)


@dataclass(frozen=True)
class OutlineColours:
    artefact: str
    region: str
    artefact_name: str
    region_name: str


def _farthest(candidates: tuple[tuple[str, str], ...], under: np.ndarray | None, taken: str | None) -> tuple[str, str]:
    usable = [c for c in candidates if c[1] != taken]
    if under is None:
        return usable[0]
    return max(usable, key=lambda c: float(np.linalg.norm(rgb(c[1]) - under)))


def _median_under(images: list[np.ndarray], masks: list[np.ndarray]) -> np.ndarray | None:
    pixels = [as_rgb(image)[edge(mask)] for image, mask in zip(images, masks) if np.asarray(mask).any()]
    pixels = [p for p in pixels if len(p)]
    return np.median(np.concatenate(pixels), axis=0) if pixels else None


def choose_colours(images: list[np.ndarray], artefacts: list[np.ndarray], regions: list[np.ndarray]) -> OutlineColours:
    """One artefact and one region outline colour for a figure of these images (module docstring)."""
    artefact = _farthest(ARTEFACT_CANDIDATES, _median_under(images, artefacts), None)
    region = _farthest(REGION_CANDIDATES, _median_under(images, regions), artefact[1])
    return OutlineColours(artefact[1], region[1], artefact[0], region[0])


def halo_colour(colour: str) -> str:
    """Black around a light line, white around a dark one (relative luminance, sRGB weights)."""
    return "#000000" if float(rgb(colour) @ np.array([0.2126, 0.7152, 0.0722])) > 0.5 else "#FFFFFF"


def draw_outline(picture: np.ndarray, mask: np.ndarray, colour: str, width: int) -> None:
    """Draw ``mask``'s border, ``width`` pixels inside it, in ``colour``, with a halo of half
    that width outside it in black or white, whichever contrasts with the colour; in place."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return
    line = mask & ~binary_erosion(mask, iterations=width, border_value=0)
    halo = binary_dilation(mask, iterations=max(1, width // 2)) & ~mask
    picture[halo] = rgb(halo_colour(colour))
    picture[line] = rgb(colour)
