"""One PDF page for ``audit finetune``: training curves, before/control/after tables, the
verdict, and example saliency maps (|∂y_pred/∂x|) before and after, drawn with matplotlib and
laid out with reportlab."""

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

from audit.data.batch import Batch  # noqa: E402


def _png(figure: plt.Figure) -> io.BytesIO:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=130, bbox_inches="tight")
    plt.close(figure)
    buffer.seek(0)
    return buffer


def _curves(results: dict[str, Any]) -> io.BytesIO:
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 2.8))
    for block, colour in ((results["after"], "tab:blue"), (results["control"], "tab:grey")):
        for seed, history in block["history"].items():
            epochs = [h["epoch"] for h in history]
            left.plot(epochs, [h["valid_auc"] for h in history], color=colour, alpha=0.8,
                      label=f"{block['loss']} seed {seed}")
            right.plot(epochs, [h["losses"]["total"] for h in history], color=colour, alpha=0.8)
    left.axhline(results["before"]["valid"]["auc"] or 0.0, color="k", linestyle=":", label="before")
    left.set(xlabel="epoch", ylabel="validation AUC", ylim=(-0.02, 1.02))
    right.set(xlabel="epoch", ylabel="training loss (total)", yscale="log")
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


def _number(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"


def _table(results: dict[str, Any]) -> Table:
    header = ["validation", "AUC", "± seeds", "accuracy", "enrichment (artefact)", "IoU (regions)"]
    rows = [header]
    for name in ("before", "control", "after"):
        block = results[name]["valid"]
        label = name if name == "before" else f"{name} ({results[name]['loss']})"
        rows.append([label, _number(block["auc"]), _number(block["auc_std"]), _number(block["accuracy"]),
                     _number(block["enrichment"]), _number(block["iou"])])
    table = Table(rows)
    table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.3, colors.grey), ("FONTSIZE", (0, 0), (-1, -1), 8),
                               ("BACKGROUND", (0, 0), (-1, 0), colors.whitesmoke)]))
    return table


def write_report(results: dict[str, Any], batch: Batch, maps: dict[str, np.ndarray], path: Path) -> Path:
    """Write the report page to ``path``."""
    styles = getSampleStyleSheet()
    config = results["config"]
    story = [
        Paragraph(f"audit finetune: {results['after']['loss']} on {Path(results['model']['path']).name}", styles["Heading2"]),
        Paragraph(f"{config['epochs']} epochs max, lr {config['lr']}, λ_act {config['lambda_act']}, "
                  f"λ_grad {config['lambda_grad']}, layers {', '.join(config['layers'])}, masks: {config['mode']}, "
                  f"seeds {', '.join(map(str, config['seeds']))}", styles["Normal"]),
        Spacer(1, 0.3 * cm),
        Paragraph(results["verdict"]["sentence"], styles["Normal"]),
        Spacer(1, 0.3 * cm),
        _table(results),
        Spacer(1, 0.3 * cm),
        Image(_curves(results), width=17 * cm, height=5.2 * cm),
        Paragraph("Gradient saliency |∂y/∂x| (first seed); regions in green, artefact in red.", styles["Normal"]),
        Image(_maps(batch, maps), width=min(17, 2.2 * len(batch)) * cm, height=2.2 * (len(maps) + 1) * cm),
    ]
    SimpleDocTemplate(str(path), pagesize=A4, topMargin=1.2 * cm, bottomMargin=1.2 * cm).build(story)
    return path
