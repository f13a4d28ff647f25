"""Does the map point at the region that matters? Per-image distributions per method, from
``per_image.csv`` (Viviano et al. 2020; Cohen et al. 2021; Aggarwal et al. 2020; Arras et al. 2022)."""

from __future__ import annotations

from typing import Any

import numpy as np

from audit.report.pdf import plot, style
from audit.report.pdf.inputs import RunFiles, column
from audit.report.pdf.plot import Figure
from audit.report.pdf.text import get, number

PANELS = (
    ("region_iou", "IoU (top-|region| pixels)"),
    ("region_iop", "IoP = rank accuracy"),
    ("region_auprc", "localisation utility (AUPRC)"),
    ("region_pointing_game", "pointing game (hit rate)"),
    ("region_relevance_mass", "relevance mass"),
    ("pointwise_detection", "pointwise detection (mAP)"),
)


def _scored(files: RunFiles, method: str) -> bool:
    values = column(files.per_image, f"{method}.region_iou")
    return values is not None and values.size > 0


@plot.styled
def localisation(results: dict[str, Any], files: RunFiles) -> Figure:
    figure = Figure(
        "Localisation on the region per method",
        "Distribution over images (box: quartiles and median; whiskers: 1.5 × IQR; ◆: mean) of how well each "
        "method's map matches the region mask. IoU/IoP: overlap of the top-|region| salient pixels with the region; "
        "localisation utility: precision–recall area with the region as the target; pointing game: the map's "
        "maximum lies in the region (bar: hit rate with 95% CI); relevance mass: share of positive saliency inside the "
        "region; rank accuracy (the share of the top-|region| pixels inside it) equals IoP, since the top-|region| "
        "pixels are counted with ties by expected value. All are 0 (misses the region) to 1 "
        "(matches it); low values mean the model's evidence lies elsewhere. Pointwise detection (bar, one number per "
        "method): average precision over the dataset of the map's maximum as a detection of the region, ranked by "
        "the explained class's probability; images without a region count as negatives.",
    )
    methods = list(results["methods"])
    if not methods:
        return plot.unavailable(figure, "no saliency method was run")
    if files.per_image is None:
        return plot.unavailable(figure, f"Unavailable: {files.per_image_missing}.")
    if not any(_scored(files, m) for m in methods):
        reasons = "; ".join(f"{m}: {get(results, 'methods', m, 'region', 'reason') or 'no region masks'}" for m in methods)
        return plot.unavailable(figure, f"Unavailable: no image has a region mask ({reasons}).")
    fig, axes = plot.new(2, 3, height=3.9, gridspec_kw={"hspace": 0.9, "wspace": 0.4})
    for ax, (key, title) in zip(axes.flat, PANELS):
        ax.set_title(title, fontsize=7.5)
        ax.set_ylim(-0.04, 1.04)
        ax.grid(axis="x", visible=False)
        if key == "region_pointing_game":
            means = [get(results, "methods", m, "region", "pointing_game", "mean") for m in methods]
            intervals = [get(results, "methods", m, "region", "pointing_game", "ci95") for m in methods]
            series = [("hit rate", style.REGION, means, intervals)]
            plot.grouped_bars(ax, methods, series, "", slant_over=2)
            ax.set_ylim(-0.04, 1.04)
            continue
        if key == "pointwise_detection":
            means = [get(results, "methods", m, "region", "pointwise_detection", "map") for m in methods]
            plot.grouped_bars(ax, methods, [("mAP", style.REGION, means, [None] * len(methods))], "", slant_over=2)
            ax.set_ylim(-0.04, 1.04)
            continue
        data = [column(files.per_image, f"{m}.{key}") for m in methods]
        data = [values if values is not None else np.array([]) for values in data]
        for i, (values, method) in enumerate(zip(data, methods)):
            colour = style.method_colour(i)
            if values.size == 0:
                ax.text(i, 0.5, "n/a", ha="center", va="center", color=style.NEUTRAL, fontsize=6.5)
                continue
            box = ax.boxplot(values, positions=[i], widths=0.55, patch_artist=True, showfliers=True,
                             flierprops={"markersize": 2, "markeredgecolor": colour, "alpha": 0.5},
                             medianprops={"color": "#222222", "linewidth": 1})
            box["boxes"][0].set(facecolor=colour, alpha=0.55, edgecolor=colour)
            for part in ("whiskers", "caps"):
                for line in box[part]:
                    line.set(color=colour)
            ax.plot(i, values.mean(), marker="D", color="#222222", markersize=3)
        plot.tick_labels(ax, methods, slant_over=2)
        ax.set_xlim(-0.6, len(methods) - 0.4)
    means = ", ".join(f"{m} {number(get(results, 'methods', m, 'region', 'iou', 'mean'))}" for m in methods)
    figure.notes.append(f"mean IoU: {means}")
    detections = ", ".join(f"{m} {number(get(results, 'methods', m, 'region', 'pointwise_detection', 'map'))}" for m in methods)
    figure.notes.append(f"pointwise detection mAP: {detections}")
    return plot.finish(figure, fig)
