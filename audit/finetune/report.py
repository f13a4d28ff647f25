"""One PDF page for ``audit finetune``: the verdicts, Viviano et al.'s Table 1 for the model,
training curves with the selected and collapse epochs marked, and example saliency maps
(|∂y_pred/∂x|) before and after; drawn with matplotlib and laid out with reportlab."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from reportlab.lib import colors  # noqa: E402
from reportlab.lib.pagesizes import A4  # noqa: E402
from reportlab.lib.styles import getSampleStyleSheet  # noqa: E402
from reportlab.lib.units import cm  # noqa: E402
from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle  # noqa: E402

from xml.sax.saxutils import escape  # noqa: E402

from audit.data.batch import Batch  # noqa: E402


def _png(figure: plt.Figure) -> io.BytesIO:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=130, bbox_inches="tight")
    plt.close(figure)
    buffer.seek(0)
    return buffer


def _curves(results: dict[str, Any]) -> io.BytesIO:
    """Validation AUROC and training loss per epoch for every arm and seed; the selected epoch
    is circled and a collapse is marked with a red cross and a dashed line at its epoch. The
    control is dashed with markers and drawn above the "before" line, so it shows where it
    lies on it (an AUROC of 0 on a biased model's flipped data); the loss axis is symmetric-log,
    linear below 1e-3, so a loss of 0 is drawn (a log axis cannot show it)."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.0))
    palette = plt.get_cmap("tab10")
    for k, (arm, block) in enumerate(results["arms"].items()):
        control = arm == results["config"]["control"]
        colour = "tab:grey" if control else palette(k)
        look = {"linestyle": "--", "marker": ".", "markersize": 4, "zorder": 3} if control else {"zorder": 4}
        for i, row in enumerate(block["per_seed"]):
            history = block["history"][str(row["seed"])]
            epochs = [h["epoch"] for h in history]
            aucs = [np.nan if h["valid_auc"] is None else h["valid_auc"] for h in history]
            totals = [h["losses"].get("total", np.nan) for h in history]
            left.plot(epochs, aucs, color=colour, alpha=0.8, label=arm if i == 0 else None, **look)
            right.plot(epochs, totals, color=colour, alpha=0.8, **look)
            best = row["best_epoch"]
            if 1 <= best <= len(history):
                left.plot([best], [aucs[best - 1]], "o", mfc="none", color=colour)
            collapse = row["collapse"]["epoch"] if row["collapse"]["collapsed"] else None
            if collapse is not None and 1 <= collapse <= len(history):
                for axis, values in ((left, aucs), (right, totals)):
                    axis.axvline(collapse, color="red", linestyle="--", linewidth=0.8)
                    axis.plot([collapse], [values[collapse - 1]], "x", color="red", markersize=7)
    before = results["before"]["valid"]["auc"]
    if before is not None:
        left.axhline(before, color="k", linestyle=":", linewidth=0.8, label="before", zorder=2)
    left.set(xlabel="epoch", ylabel="validation AUROC (selection)", ylim=(-0.04, 1.04))
    right.set(xlabel="epoch", ylabel="training loss (total; linear below 1e-3)")
    right.set_yscale("symlog", linthresh=1e-3)
    left.legend(fontsize=6)
    return _png(figure)


def _maps(batch: Batch, maps: dict[str, np.ndarray]) -> io.BytesIO:
    rows = ["image", *maps]
    figure, axes = plt.subplots(len(rows), len(batch), figsize=(1.4 * len(batch), 1.4 * len(rows)), squeeze=False)
    for j in range(len(batch)):
        axes[0, j].imshow(batch.images[j].mean(axis=2), cmap="gray")
        if batch.has_region[j]:
            axes[0, j].contour(batch.region[j], levels=[0.5], colors="lime", linewidths=0.6)
        if batch.has_artefact[j]:
            axes[0, j].contour(batch.artefact[j], levels=[0.5], colors="red", linewidths=0.6)
        for i, name in enumerate(maps, start=1):
            axes[i, j].imshow(maps[name][j], cmap="magma")
        for i, name in enumerate(rows):
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if j == 0:
                axes[i, j].set_ylabel(name, fontsize=7)
    return _png(figure)


def _seeds(seeds: list[int]) -> str:
    """"1 seed (0)", "3 seeds (0, 1, 2)": never "seeds 0", which reads as none."""
    return f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))})"


def _number(value: Any, spread: Any = None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if spread is None else f"{value:.3f} ± {spread:.3f}"


def _table(results: dict[str, Any]) -> Table:
    """Viviano et al.'s Table 1 for this model (means ± standard deviation over seeds)."""
    header = ["loss", "train AUROC", "valid AUROC", "test AUROC", "ΔIoU vs before", "best epoch", "collapsed"]
    rows = [header]
    before = results["before"]
    rows.append(["before", _number(before["train"]["auc"]), _number(before["valid"]["auc"]),
                 _number(before["test"]["auc"]), "–", "–", "–"])
    for row in results["table"]:
        rows.append([row["loss"], _number(row["train_auc"], row["train_auc_std"]),
                     _number(row["valid_auc"], row["valid_auc_std"]), _number(row["test_auc"], row["test_auc_std"]),
                     _number(row["delta_iou"], row["delta_iou_std"]),
                     "–" if row["best_epoch"] is None else f"{row['best_epoch']:.1f}",
                     ", ".join(f"seed {s}" for s in row["collapsed_seeds"]) or "no"])
    table = Table(rows)
    table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.3, colors.grey), ("FONTSIZE", (0, 0), (-1, -1), 8),
                               ("BACKGROUND", (0, 0), (-1, 0), colors.whitesmoke)]))
    return table


def write_report(results: dict[str, Any], batch: Batch, maps: dict[str, np.ndarray], path: Path) -> Path:
    """Write the report page to ``path``."""
    styles = getSampleStyleSheet()
    config = results["config"]
    normalisation = results["normalisation"]
    losses = ", ".join(config["losses"]) or config["control"]
    story = [
        Paragraph(f"audit finetune: {escape(losses)} on {escape(Path(results['model']['path']).name)}", styles["Heading2"]),
        Paragraph(escape(f"{config['epochs']} epochs max (patience {config['patience']}), lr {config['lr']}, "
                         f"λ_act {config['lambda_act']}, λ_grad {config['lambda_grad']}, layers {', '.join(config['layers'])}, "
                         f"masks: {config['mode']}, {_seeds(config['seeds'])}. "
                         f"{results['data']['split']}. Training: {normalisation['training']}; {normalisation['note']}."),
                  styles["Normal"]),
        Spacer(1, 0.3 * cm),
        *[item for block in results["verdict"].values()
          for item in (Paragraph(escape(block["sentence"]), styles["Normal"]), Spacer(1, 0.15 * cm))],
        Spacer(1, 0.3 * cm),
        _table(results),
        Paragraph("Means ± standard deviation over seeds. AUROC on train, on the selection (valid) and on the "
                  "report (test) images; ΔIoU: IoU of the gradient map's peak with the regions on the report "
                  "images, minus the model's before fine-tuning.", styles["Normal"]),
        Spacer(1, 0.3 * cm),
        Image(_curves(results), width=17 * cm, height=5.6 * cm),
        Paragraph("Circles: the selected epoch. Red crosses and dashed lines: the epoch where a run collapsed.",
                  styles["Normal"]),
        Paragraph("Gradient saliency |∂y/∂x| (first seed); regions in green, artefact in red.", styles["Normal"]),
        Image(_maps(batch, maps), width=min(17, 2.2 * len(batch)) * cm, height=2.2 * (len(maps) + 1) * cm),
    ]
    SimpleDocTemplate(str(path), pagesize=A4, topMargin=1.2 * cm, bottomMargin=1.2 * cm).build(story)
    return path
