"""Does the artefact change what the model gets right? AURRAC curves (Pfau et al. 2019, Fig. 2),
performance with and without the artefact (Pfau Table 2) and the ablations (Pfau App. A.1)."""

from __future__ import annotations

from typing import Any

from audit.report.pdf import plot, style
from audit.report.pdf.plot import Figure
from audit.report.pdf.text import bounded_list, get, is_number, number, p_value, plain

SUBSETS = (("all images", ()), ("with artefact", ("by_artefact", "present")), ("without artefact", ("by_artefact", "absent")))


@plot.styled
def aurrac(results: dict[str, Any]) -> Figure:
    figure = Figure(
        "Response-rate accuracy curves (AURRAC)",
        "Images are sorted by their saliency on the artefact, least first; at response rate r the model answers only the "
        "share r of images with the least artefact saliency, and the curve shows its accuracy on them (Pfau et al. 2019, "
        "Fig. 2). The dashed line is the plain accuracy on all of them. A curve that falls from left to right means images "
        "whose saliency sits on the artefact are more often wrong: the map predicts failure caused by the artefact, "
        "and the area under the curve (AURRAC, in the legend) exceeds the accuracy. A flat curve means it does not.",
    )
    fig, ax = plot.new(height=2.4)
    drawn, accuracy, flat = False, None, {}
    for index, (name, entry) in enumerate(results["methods"].items()):
        block = entry.get("aurrac") or {}
        curve = block.get("curve") or {}
        if not curve.get("r") or block.get("value") is None:
            figure.notes.append(f"{name}: n/a ({block.get('reason', 'no curve')})")
            continue
        tau = f", τ {number(block.get('kendall_tau'), 2)}" if is_number(block.get("kendall_tau")) else ""
        ax.plot(curve["r"], curve["accuracy"], drawstyle="steps-pre", color=style.method_colour(index),
                label=f"{plain(name)}: AURRAC {number(block['value'])}{tau}")
        accuracy = block.get("accuracy") if accuracy is None else accuracy
        if len(set(curve["accuracy"])) == 1:
            flat.setdefault(curve["accuracy"][0], []).append(name)
        drawn = True
    for level, names in flat.items():
        figure.notes.append(
            f"{', '.join(names)}: flat at accuracy {number(level)}" + (" (the curves lie on top of each other)" if len(names) > 1 else "")
            + f": the accuracy is {number(level)} at every response rate, so no order of the images can change it and "
            "the curve says nothing about the artefact")
    if not drawn:
        return plot.unavailable(figure, "Unavailable: " + "; ".join(figure.notes or ["no saliency method was run"]))
    if is_number(accuracy):
        ax.axhline(accuracy, color=style.NEUTRAL, linestyle="--", linewidth=0.9, zorder=1, label=f"plain accuracy {number(accuracy)}")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("response rate r (share of images kept, least artefact-salient first)")
    ax.set_ylabel("accuracy on the kept images")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return plot.finish(figure, fig)


@plot.styled
def performance(results: dict[str, Any]) -> Figure:
    figure = Figure(
        "Performance with and without the artefact",
        "Accuracy and area under the ROC curve (AUROC; one-vs-rest mean for more than two classes) on all labelled "
        "images, on those that carry the artefact and on those that do not (Pfau et al. 2019, Table 2); n is the "
        "number of labelled images. A model that relies on the artefact performs differently on the two subsets. "
        "AUROC 0.5 is chance; below 0.5 the model ranks the classes the wrong way round.",
    )
    perf = results.get("performance") or {}
    one_sided = _one_subset(perf)
    if one_sided:
        return plot.unavailable(figure, one_sided)
    groups, accuracy, auc = [], [], []
    for label, keys in SUBSETS:
        block = get(perf, *keys) if keys else perf
        block = block or {}
        groups.append(f"{label}\n(n = {block.get('n', 0)})")
        accuracy.append(block.get("accuracy"))
        auc.append(block.get("auc"))
        if block.get("reason") or block.get("auc_reason"):
            figure.notes.append(f"{label}: {block.get('reason') or block['auc_reason']}")
    fig, ax = plot.new(height=2.1, width=4.6)
    plot.grouped_bars(ax, groups, [("accuracy", style.METHOD_COLOURS[0], accuracy, [None] * 3), ("AUROC", style.METHOD_COLOURS[1], auc, [None] * 3)], "")
    for container in ax.containers:
        ax.bar_label(container, fmt="%.3f", fontsize=6, padding=1)
    ax.axhline(0.5, color=style.NEUTRAL, linestyle=":", linewidth=0.8)
    ax.set_ylim(0, 1.12)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return plot.finish(figure, fig)


def _one_subset(perf: dict[str, Any]) -> str | None:
    """The sentence that replaces the chart when every labelled image, or none, carries the
    artefact: one of the two subsets is empty and there is nothing to compare."""
    present, absent = (get(perf, "by_artefact", side) or {} for side in ("present", "absent"))
    if not perf.get("by_artefact") or not perf.get("n") or (present.get("n") and absent.get("n")):
        return None
    which = "All" if present.get("n") else "None"
    overall = f"accuracy {number(perf.get('accuracy'))}, AUROC {number(perf.get('auc'))}"
    return (f"{which} of the {perf['n']} labelled images carry the artefact, so there is no subset "
            f"{'without' if which == 'All' else 'with'} it to compare with; on all of them: {overall}.")


def _ablation_series(results: dict[str, Any], key: str) -> tuple[list[Any], list[Any]]:
    values, intervals = [], []
    for kind in ("artefact", "region"):
        block = get(results, "ablation", kind, key) or {}
        values.append(block.get("mean"))
        intervals.append([block.get("ci_low"), block.get("ci_high")])
    return values, intervals


@plot.styled
def ablation(results: dict[str, Any]) -> Figure:
    figure = Figure(
        "Ablation: removing the artefact, keeping only the region",
        "Left: share of predictions that stay the same when the artefact pixels are replaced by the image's mean colour "
        "(artefact removed), or when everything outside the region is (region kept) (Pfau et al. 2019, App. A.1), with "
        "95% confidence intervals. Centre: the average change in the probability of the explained class (--target). A model that "
        "ignores the artefact keeps its predictions when it is removed (left bar near 100%, centre bar near 0). Right: "
        "Spearman correlation between each method's saliency on the artefact (enrichment) and the probability drop when "
        "it is removed; above 0 the map tells which images depend on the artefact, near 0 it does not.",
    )
    if not any(is_number(get(results, "ablation", kind, "n")) and get(results, "ablation", kind, "n") for kind in ("artefact", "region")):
        return plot.unavailable(figure, "Unavailable: no image has an artefact or region mask, so nothing could be ablated.")
    groups = ["artefact\nremoved", "region\nkept"]
    fig, axes = plot.new(1, 3, height=2.2, gridspec_kw={"width_ratios": [1, 1, 1.2], "wspace": 0.55})
    values, intervals = _ablation_series(results, "unchanged")
    plot.grouped_bars(axes[0], groups, [("unchanged", style.METHOD_COLOURS[0], [v * 100 if is_number(v) else v for v in values],
                                         [[b * 100 if is_number(b) else b for b in ci] for ci in intervals])], "predictions unchanged (%)")
    axes[0].set_ylim(0, 105)
    values, intervals = _ablation_series(results, "delta_probability")
    plot.grouped_bars(axes[1], groups, [("change", style.ARTEFACT, values, intervals)], "mean change in p(explained class)")
    names, rhos = [], []
    for name, entry in results["methods"].items():
        block = entry.get("saliency_vs_ablation") or {}
        names.append(name)
        rhos.append(block.get("spearman"))
        if block.get("spearman") is None:
            figure.notes.append(f"saliency vs ablation, {name}: n/a ({block.get('reason', 'not computed')})")
        else:
            figure.notes.append(f"saliency vs ablation, {name}: ρ = {number(block['spearman'])}, p {p_value(block.get('p_value'))}, n = {block.get('n')}")
    plot.grouped_bars(axes[2], names, [("ρ", style.METHOD_COLOURS[2], rhos, [None] * len(rhos))], "Spearman ρ, saliency vs drop", slant_over=2)
    axes[2].set_ylim(-1.05, 1.05)
    for kind in ("artefact", "region"):
        changed = get(results, "ablation", kind, "changed_to") or {}
        if changed:
            classes = results.get("model", {}).get("classes") or []
            moved = bounded_list([f"{classes[int(k)] if str(k).isdigit() and int(k) < len(classes) else k}: {v}" for k, v in changed.items()], 12, 60)
            figure.notes.append(f"{kind} ablation, changed predictions went to: {moved}")
    return plot.finish(figure, fig)
