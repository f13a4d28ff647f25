"""The model-parameter randomisation sanity check (Adebayo et al. 2018), drawn as Cohen et al.
2021, Fig. 5 / App. H: Spearman correlation with the original maps against layers re-initialised."""

from __future__ import annotations

import math
from typing import Any

from audit.metrics.randomisation import SANITY_THRESHOLD
from audit.report.pdf import plot, style
from audit.report.pdf.plot import Figure
from audit.report.pdf.text import get, is_number, plain, shorten

MAX_TICKS = 40


def _ticks(ax: Any, names: list[str]) -> None:
    step = max(1, -(-len(names) // MAX_TICKS))
    shown = list(range(0, len(names), step))
    ax.set_xticks(shown, [plain(shorten(names[i], 22)) for i in shown], rotation=90, fontsize=5.5)


@plot.styled
def randomisation(results: dict[str, Any]) -> Figure:
    figure = Figure(
        "Randomisation sanity check",
        "Spearman rank correlation between each method's original maps (absolute values) and its maps after model "
        "layers are re-initialised to random weights (Adebayo et al. 2018; drawn as Cohen et al. 2021, Fig. 5); line: "
        "mean over the checked images, band: ± one standard deviation. Top (cascading): layers are re-initialised one "
        "more at a time from the output towards the input. Bottom (independent): one layer at a time, the rest as "
        "trained. A trustworthy method falls quickly towards 0; a method that stays high after the network is "
        "randomised shows the image rather than what the model learned. Dotted line: the sanity threshold; a method whose "
        f"last cascading step has a 95% CI reaching {SANITY_THRESHOLD:g} fails the check and does not count in the finding.",
    )
    fig, axes = plot.new(2, 1, height=5.8, gridspec_kw={"hspace": 0.85})
    drawn, lowest = False, 0.0
    for ax, kind, title in ((axes[0], "cascading", "cascading (output → input)"), (axes[1], "independent", "independent (one layer)")):
        ax.set_title(title, fontsize=7.5)
        names: list[str] = []
        for index, (name, entry) in enumerate(results["methods"].items()):
            steps = get(entry, "randomization", kind)
            if not steps:
                if kind == "cascading":
                    reason = get(entry, "randomization", "reason") or "not run"
                    figure.notes.append(f"{name}: n/a ({reason})")
                continue
            x = list(range(len(steps)))
            mean = [s.get("spearman") if is_number(s.get("spearman")) else float("nan") for s in steps]
            std = [s.get("std") if is_number(s.get("std")) else 0.0 for s in steps]
            colour = style.method_colour(index)
            lowest = min([lowest] + [m - s for m, s in zip(mean, std) if math.isfinite(m)])
            ax.plot(x, mean, marker="o", markersize=2.5, color=colour, label=plain(name))
            ax.fill_between(x, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], color=colour, alpha=0.15, linewidth=0)
            names = names if len(names) >= len(steps) else [str(s.get("layer")) for s in steps]
            drawn = True
        if names:
            _ticks(ax, names)
        ax.axhline(0, color="#888888", linewidth=0.6)
        if kind == "cascading":
            ax.axhline(SANITY_THRESHOLD, color=style.FAIL, linewidth=0.8, linestyle=":")
        ax.set_xlabel("layer re-initialised" + (" (and all after it)" if kind == "cascading" else ""))
    if not drawn:
        return plot.unavailable(figure, "Unavailable: " + "; ".join(figure.notes or ["no saliency method was run"]))
    for ax in axes:
        ax.set_ylim(max(-1.05, min(-0.25, lowest - 0.05)), 1.05)
    for ax in axes:
        ax.set_ylabel("Spearman ρ with original map")
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    images = {get(e, "randomization", "images") for e in results["methods"].values()} - {None, 0}
    if images:
        figure.notes.append(f"images checked: {', '.join(str(i) for i in sorted(images))}")
    return plot.finish(figure, fig)
