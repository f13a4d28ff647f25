"""Matplotlib (Agg canvas, in memory, no pyplot state) for the report: one style, PNG bytes, and the ``Figure`` record.

Figures are drawn at the width they are printed (``PAGE_WIDTH_IN``) with 7–8 pt text, so
labels in plots match the report's text size; rendered at ``DPI`` for print.
"""

from __future__ import annotations

import functools
import io
import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure
from PIL import Image

from audit.report.pdf import style
from audit.report.pdf.text import is_number, plain

T = TypeVar("T")
PAGE_WIDTH_IN = 6.85  # A4 minus 18 mm margins
DPI = 170
RC = {
    "font.family": "DejaVu Sans",
    "font.size": 7.5,
    "axes.titlesize": 8,
    "axes.titleweight": "bold",
    "axes.labelsize": 7.5,
    "axes.edgecolor": "#888888",
    "axes.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": style.GRID,
    "grid.linewidth": 0.5,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "lines.linewidth": 1.4,
    "savefig.dpi": DPI,
}


@dataclass
class Figure:
    """A numbered figure: title and reading guide, and the PNG or why it could not be drawn."""

    title: str
    caption: str
    png: bytes | None = None
    missing: str = ""
    notes: list[str] = field(default_factory=list)
    width_in: float = PAGE_WIDTH_IN
    height_in: float = 0.0


def styled(build: Callable[..., T]) -> Callable[..., T]:
    """Run a figure builder under the report's matplotlib style (rcParams are read as artists are made)."""

    @functools.wraps(build)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        with matplotlib.rc_context(RC):
            return build(*args, **kwargs)

    return wrapper


def new(rows: int = 1, cols: int = 1, height: float = 2.4, width: float = PAGE_WIDTH_IN, **kwargs: Any):
    """A figure and its axes (call inside a ``styled`` builder)."""
    fig = MplFigure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, **kwargs)


def finish(figure: Figure, fig: Any) -> Figure:
    """Render ``fig`` to PNG into ``figure`` and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.03, facecolor="white")
    width, height = Image.open(buffer).size
    figure.png, figure.width_in, figure.height_in = buffer.getvalue(), width / DPI, height / DPI
    return figure


def unavailable(figure: Figure, reason: str) -> Figure:
    figure.missing = reason
    return figure


def _wrap(line: str, width: int = 18) -> str:
    """One label line, literal for matplotlib, shortened to two wrapped lines at most."""
    return plain("\n".join(textwrap.wrap(line, width, break_on_hyphens=False, max_lines=2, placeholder="…")) or line)


def tick_labels(ax: Any, names: list[str], axis: str = "x", slant_over: int = 5) -> None:
    """Names as ticks, literal, wrapped and shortened; slanted when there are more than ``slant_over``."""
    labels = ["\n".join(_wrap(line) for line in str(n).split("\n")) for n in names]
    if axis == "y":
        ax.set_yticks(range(len(names)), labels)
        return
    many = len(names) > slant_over
    ax.set_xticks(range(len(names)), labels, rotation=30 if many else 0, ha="right" if many else "center")


def grouped_bars(ax: Any, groups: list[str], series: list[tuple[str, str, list[Any], list[Any]]], ylabel: str, slant_over: int = 5) -> None:
    """Bars per group (x) and series (colour) with 95% CI error bars; missing values marked n/a.

    series: (label, colour, values, intervals) with one value and one [low, high] per group.
    """
    width = 0.8 / max(len(series), 1)
    for s, (label, colour, values, intervals) in enumerate(series):
        labelled = False
        for g, (value, ci) in enumerate(zip(values, intervals)):
            x = g - 0.4 + width * (s + 0.5)
            if not is_number(value):
                ax.text(x, 0, "n/a", ha="center", va="bottom", fontsize=6.5, color=style.NEUTRAL, rotation=90 if len(series) > 2 else 0)
                continue
            ax.bar(x, value, width * 0.88, color=colour, label=None if labelled else plain(label))
            labelled = True
            if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(is_number(v) for v in ci):
                error = [[max(value - ci[0], 0)], [max(ci[1] - value, 0)]]
                ax.errorbar(x, value, yerr=error, color="#222222", capsize=2, elinewidth=0.8, capthick=0.8, fmt="none")
    tick_labels(ax, groups, slant_over=slant_over)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_ylabel(ylabel)
    ax.grid(axis="x", visible=False)
    ax.axhline(0, color="#888888", linewidth=0.6)
