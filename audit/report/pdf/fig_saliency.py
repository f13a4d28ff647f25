"""Saliency on the artefact per class (Pfau et al. 2019, Fig. 1 and App. C) and the mean maps."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from audit.report.pdf import plot, style
from audit.report.pdf.inputs import Maps, RunFiles, class_names, column
from audit.report.pdf.outlines import as_rgb, choose_colours, halo_colour
from audit.report.pdf.plot import Figure
from audit.report.pdf.text import get, plain, shorten
from audit.report.finding import ENRICHMENT

ALL = "all images"
MAP_COLUMNS = 6
#: Classes a per-class figure shows at most (those with images, in label order); the rest are
#: counted in a note. A model with 1000 outputs audited on a few classes shows those few.
SHOWN_CLASSES = 24


def _shown(classes: list[str], present: list[bool], figure: Figure) -> list[int]:
    """Indices of the classes a per-class figure shows: those ``present`` (with images), at most
    ``SHOWN_CLASSES``; a note on ``figure`` counts the rest."""
    indices = [k for k, here in enumerate(present) if here]
    absent = len(classes) - len(indices)
    if absent:
        figure.notes.append(f"{absent} of the model's {len(classes)} classes have no images and are not shown.")
    if len(indices) > SHOWN_CLASSES:
        figure.notes.append(f"The first {SHOWN_CLASSES} of the {len(indices)} classes with images are shown; "
                            f"results.json holds every class.")
    return indices[:SHOWN_CLASSES]


def _series(results: dict[str, Any], keys: tuple[str, ...], figure: Figure) -> tuple[list[str], list[tuple[str, str, list[Any], list[Any]]]]:
    """Groups (the classes with images by label, then all images) and one series of (value, CI) per method."""
    blocks = [get(entry, *keys) or {} for entry in results["methods"].values()]
    everything = class_names(results)
    classes = [everything[k] for k in _shown(everything, [any(c in (b.get("by_class") or {}) for b in blocks) for c in everything], figure)]
    series = []
    for index, (name, entry) in enumerate(results["methods"].items()):
        block = get(entry, *keys) or {}
        by_class = block.get("by_class") or {}
        values = [get(by_class, c, "mean") for c in classes] + [block.get("overall")]
        intervals = [get(by_class, c, "ci95") for c in classes] + [block.get("ci95")]
        series.append((name, style.method_colour(index), values, intervals))
    return [*classes, ALL], series


def _bars(results: dict[str, Any], keys: tuple[str, ...], ylabel: str, figure: Figure, height: float = 2.3):
    groups, series = _series(results, keys, figure)
    fig, ax = plot.new(height=height)
    plot.grouped_bars(ax, groups, series, ylabel)
    if len(series) > 1:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title="method")
    return fig, ax


@plot.styled
def global_saliency(results: dict[str, Any]) -> Figure:
    figure = Figure(
        "Global saliency on the artefact per class",
        "Mean saliency on the artefact pixels, m(X), per true class and over all images, z-scored per method over all "
        "pixels of all images (Pfau et al. 2019, Fig. 1); error bars are 95% confidence intervals. 0 is the average "
        "pixel: a bar well above 0 means the artefact draws more saliency than a typical pixel. Classes that differ "
        "strongly from each other suggest the artefact is read as evidence for some classes (inter-class variance).",
    )
    if not results["methods"]:
        return plot.unavailable(figure, "no saliency method was run")
    fig, _ = _bars(results, ("artefact", "mean_saliency"), "mean saliency on artefact (z)", figure)
    return plot.finish(figure, fig)


@plot.styled
def peak_share(results: dict[str, Any], files: RunFiles) -> Figure:
    figure = Figure(
        "Peak saliency share per class",
        "Share of each image's top 2% most salient pixels that fall on the artefact, n(X) (Pfau et al. 2019, Eq. 3, "
        "App. C), per true class and over all images, with 95% confidence intervals. The dashed line is the artefact's "
        "average share of the image area, the value expected if saliency ignored the artefact; bars far above it mean "
        "the strongest evidence lies on the artefact. Unlike the mean, this ranks pixels within each image, so it "
        "needs no normalisation.",
    )
    if not results["methods"]:
        return plot.unavailable(figure, "no saliency method was run")
    fig, ax = _bars(results, ("artefact", "peak_share"), "share of top-2% pixels on artefact", figure)
    for name in results["methods"]:
        area = column(files.per_image, f"{name}.artefact_area_share")
        if area is not None and area.size:
            ax.axhline(float(area.mean()), color=style.ARTEFACT, linestyle="--", linewidth=1, label="artefact area share")
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
            break
    return plot.finish(figure, fig)


@plot.styled
def enrichment(results: dict[str, Any]) -> Figure:
    figure = Figure(
        "Artefact enrichment per class",
        "Share of the absolute saliency that lies on the artefact divided by the artefact's share of the image area, "
        "per true class and over all images, with 95% confidence intervals. 1 (solid line) is chance: saliency spread "
        f"evenly. The dotted line at {ENRICHMENT:g} is the report's threshold for “saliency concentrates on the artefact” "
        "(the lower end of the interval must clear it).",
    )
    if not results["methods"]:
        return plot.unavailable(figure, "no saliency method was run")
    fig, ax = _bars(results, ("artefact", "enrichment"), "enrichment (1 = chance)", figure)
    ax.axhline(1.0, color="#222222", linewidth=0.9)
    ax.axhline(ENRICHMENT, color=style.ARTEFACT, linewidth=0.9, linestyle=":")
    return plot.finish(figure, fig)


#: opacity of a mean map over its class's mean image
MAP_ALPHA = 0.7


@dataclass(frozen=True)
class _Outline:
    share: np.ndarray  # (K, H, W) share of the class's images with the artefact at the pixel
    colour: str
    halo: str


def _artefact_outline(maps: Maps, shown: list[int]) -> _Outline | None:
    """The artefact's outline for the mean maps: a colour against the mean images, a contrasting halo."""
    if maps.artefact_share_by_class is None or maps.mean_image_by_class is None:
        return None
    masks = [maps.artefact_share_by_class[c] >= 0.5 for c in shown]
    colours = choose_colours([maps.mean_image_by_class[c] for c in shown], masks, [])
    return _Outline(maps.artefact_share_by_class, colours.artefact, halo_colour(colours.artefact))


def _limits(maps: np.ndarray) -> tuple[str, float, float]:
    """Colour map and limits shared by a method's maps: diverging around 0 when signed."""
    low, high = float(np.nanmin(maps)), float(np.nanmax(maps))
    if low < 0:
        bound = max(abs(low), abs(high)) or 1.0
        return "RdBu_r", -bound, bound
    return "viridis", 0.0, high or 1.0


@plot.styled
def mean_maps(results: dict[str, Any], files: RunFiles) -> Figure:
    figure = Figure(
        "Mean saliency map per class",
        "Average saliency map over the images of each true class, one row per method, one colour scale per method "
        "(colour bar on the right; blue–red around 0 for signed maps). Bright areas shared by a whole class show where "
        "the model looks for that class; a bright spot at a fixed place (a corner, a label, a ruler) is typical of an "
        "artefact. Under each map, semi-transparent, the class's mean image; the outline (with a halo, its colour chosen "
        "against the image) surrounds the pixels where at least half of the class's images carry the artefact. n is the "
        "number of images averaged.",
    )
    methods = [m for m in results["methods"] if m in files.maps]
    if not methods:
        reasons = "; ".join(files.maps_missing.values()) or "no saliency method was run"
        return plot.unavailable(figure, f"Unavailable: {reasons}.")
    figure.notes += [f"{method}: not shown, {reason}" for method, reason in files.maps_missing.items()]
    classes = class_names(results)
    counts = files.maps[methods[0]].count_by_class
    names = [classes[k] if k < len(classes) else str(k) for k in range(len(counts))]
    shown = _shown(names, [int(n) > 0 for n in counts], figure) or list(range(min(len(counts), SHOWN_CLASSES)))
    count = len(shown)
    cols = min(count, MAP_COLUMNS)
    rows_per_method = math.ceil(count / cols)
    cell = min(1.15, (plot.PAGE_WIDTH_IN - 1.6) / cols)
    fig, axes = plot.new(
        len(methods) * rows_per_method, cols + 1, height=cell * len(methods) * rows_per_method + 0.3,
        width=cell * cols + 1.6, squeeze=False, gridspec_kw={"width_ratios": [1] * cols + [0.06]},
    )
    outline = _artefact_outline(files.maps[methods[0]], shown)
    for m, method in enumerate(methods):
        maps = files.maps[method]
        colours, low, high = _limits(maps.mean_by_class[shown])
        image = None
        for k in range(rows_per_method * cols):
            ax = axes[m * rows_per_method + k // cols, k % cols]
            ax.set_axis_off()
            if k >= count:
                continue
            c = shown[k]
            underlay = maps.mean_image_by_class is not None
            if underlay:
                ax.imshow(as_rgb(maps.mean_image_by_class[c]), interpolation="nearest")
            image = ax.imshow(maps.mean_by_class[c], cmap=colours, vmin=low, vmax=high, interpolation="nearest",
                              alpha=MAP_ALPHA if underlay else 1.0)
            if outline is not None and outline.share[c].max() >= 0.5:
                for colour, width in ((outline.halo, 2.6), (outline.colour, 1.2)):
                    ax.contour(outline.share[c], levels=[0.5], colors=[colour], linewidths=width)
            ax.set_title(f"{plain(shorten(names[c], 18))}\nn = {int(maps.count_by_class[c])}", fontsize=6.5, fontweight="normal")
            if k % cols == 0:
                ax.text(-0.08, 0.5, plain(method), transform=ax.transAxes, rotation=90, ha="right", va="center", fontsize=7.5, fontweight="bold")
        for r in range(rows_per_method):
            bar_ax = axes[m * rows_per_method + r, cols]
            if r == 0 and image is not None:
                fig.colorbar(image, cax=bar_ax).ax.tick_params(labelsize=6)
            else:
                bar_ax.set_axis_off()
    fig.subplots_adjust(wspace=0.12, hspace=0.45)
    return plot.finish(figure, fig)
