"""Example images per method: the image, its masks outlined and the saliency overlaid, for the
most and the least artefact-salient images and misclassified ones (``maps/<method>.npz``)."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.lines import Line2D

from audit.report.pdf import plot
from audit.report.pdf.inputs import GROUPS, Maps, RunFiles, class_names
from audit.report.pdf.outlines import WIDTH_SHARE, OutlineColours, as_rgb, choose_colours, draw_outline
from audit.report.pdf.plot import Figure
from audit.report.pdf.text import is_number, plain, shorten

COLUMNS = 6
TITLES = {
    "most_artefact_salient": "most\nartefact-salient",
    "least_artefact_salient": "least\nartefact-salient",
    "misclassified": "misclassified",
}


HEAT = colormaps["viridis"]
UPSAMPLE = 224  # cells are composed at about this many pixels a side, so outlines stay thin


def _upsample(array: np.ndarray, factor: int) -> np.ndarray:
    return array.repeat(factor, axis=0).repeat(factor, axis=1)


def compose(image: np.ndarray, saliency: np.ndarray, artefact: np.ndarray, region: np.ndarray,
            colours: OutlineColours | None = None) -> np.ndarray:
    """One RGB picture: the grey or colour image, |saliency| (scaled to its maximum) laid over it in
    viridis with opacity rising with the value, and each mask's border drawn along pixel edges
    with a halo (``outlines``; colours chosen per figure, the defaults without ``colours``)."""
    colours = colours or choose_colours([], [], [])
    picture = as_rgb(image)
    magnitude = np.abs(saliency.astype(float))
    top = magnitude.max()
    magnitude = magnitude / top if top > 0 else magnitude
    alpha = (0.85 * magnitude**0.7)[..., None]
    picture = (1 - alpha) * picture + alpha * HEAT(magnitude)[..., :3]
    factor = max(1, UPSAMPLE // min(image.shape[:2]))
    picture = _upsample(picture, factor)
    width = max(2, round(min(picture.shape[:2]) * WIDTH_SHARE))
    for mask, colour in ((region, colours.region), (artefact, colours.artefact)):
        draw_outline(picture, _upsample(mask.astype(bool), factor), colour, width)
    return picture


def _cell(ax: Any, group: dict[str, np.ndarray], i: int, classes: list[str], colours: OutlineColours) -> None:
    picture = compose(group["image"][i], group["map"][i], group["artefact"][i], group["region"][i], colours)
    ax.imshow(picture, interpolation="nearest")

    def name(k: int) -> str:
        return shorten(classes[k] if 0 <= k < len(classes) else (str(k) if k >= 0 else "?"), 14)

    score = group["score"][i]
    lines = [
        shorten(str(group["path"][i]).replace("\\", "/").rsplit("/", 1)[-1], 18),
        f"true {name(int(group['label'][i]))}",
        f"pred {name(int(group['prediction'][i]))}",
        f"E = {score:.2f}" if is_number(float(score)) else "E = n/a",
    ]
    ax.set_title("\n".join(plain(line) for line in lines), fontsize=5.5, fontweight="normal", linespacing=1.15, pad=2)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _grid(method: str, maps: Maps, classes: list[str]) -> Figure:
    shown = [name for name in GROUPS if len(maps.groups[name]["path"])]
    kept = [(maps.groups[name], i) for name in shown for i in range(min(COLUMNS, len(maps.groups[name]["path"])))]
    colours = choose_colours([g["image"][i] for g, i in kept], [g["artefact"][i] for g, i in kept],
                             [g["region"][i] for g, i in kept])
    figure = Figure(
        f"Examples: {method}",
        f"Images with the {method} saliency overlaid (yellow = most salient, through green and blue to transparent = none; each image scaled to "
        f"its own maximum), the artefact outlined in {colours.artefact_name} and the region in {colours.region_name} (each "
        "with a dark or light halo; the colours are chosen against the images). Rows: the images whose saliency "
        "is most concentrated on the artefact, the least, and misclassified images. Above each: file name, true and "
        "predicted class, and E, the image's artefact enrichment (share of saliency on the artefact over its share of "
        "the area; 1 = chance).",
    )
    figure.notes += [f"{TITLES[name].replace(chr(10), ' ')}: none" for name in GROUPS if name not in shown]
    if not shown:
        return plot.unavailable(figure, "Unavailable: no example image was kept.")
    fig, axes = plot.new(len(shown), COLUMNS + 1, height=1.3 * len(shown) + 0.3, width=6.4, squeeze=False,
                         gridspec_kw={"width_ratios": [0.55] + [1] * COLUMNS, "hspace": 0.62, "wspace": 0.16})
    for row, group_name in enumerate(shown):
        group = maps.groups[group_name]
        label_ax = axes[row, 0]
        label_ax.set_axis_off()
        label_ax.text(1.0, 0.5, TITLES[group_name], ha="right", va="center", fontsize=7, fontweight="bold", transform=label_ax.transAxes)
        count = len(group["path"])
        for col in range(COLUMNS):
            ax = axes[row, col + 1]
            ax.grid(False)
            if col < count:
                _cell(ax, group, col, classes, colours)
            else:
                ax.set_axis_off()
    handles = [Line2D([], [], color=colours.artefact, linewidth=1.2, label="artefact"),
               Line2D([], [], color=colours.region, linewidth=1.2, label="region")]
    fig.legend(handles=handles, loc="lower center", ncol=2, bbox_to_anchor=(0.55, -0.02), fontsize=6.5)
    return plot.finish(figure, fig)


@plot.styled
def examples(results: dict[str, Any], files: RunFiles) -> list[Figure]:
    """One grid per method, or one placeholder naming what is missing."""
    classes = class_names(results)
    figures = []
    for method in results["methods"]:
        if method in files.maps:
            figures.append(_grid(method, files.maps[method], classes))
        else:
            figures.append(plot.unavailable(Figure(f"Examples: {method}", "The image, masks and saliency overlay for example images."), f"Unavailable: {files.maps_reason(method)}."))
    return figures
