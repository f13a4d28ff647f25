"""The PDF page of ``audit wildcat``: the settings, the summary sentence, Aggarwal et al.'s
Table 1 for this model beside the paper's ResNet-18 column, and the training curves; drawn
with matplotlib and laid out with reportlab (as ``audit.finetune.report``).

Table 1's layout: classification AUC (base, WILDCAT), pointwise detection mAP, localisation
utility (mean per-image AUPRC), and IoU (ours only), one row per method, post-hoc methods in
the paper's order then "Modified" (the WILDCAT class map). Ours are fractions, the paper's
percent; the best localisation utility of the column is bold.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from reportlab.lib import colors  # noqa: E402
from reportlab.lib.pagesizes import A4  # noqa: E402
from reportlab.lib.styles import getSampleStyleSheet  # noqa: E402
from reportlab.lib.units import cm  # noqa: E402
from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle  # noqa: E402

from audit.finetune.wildcat.comparison import PAPER_NAMES, PAPER_RESNET18  # noqa: E402

BLOCKS = (("classification_auc", "Classification AUC"), ("pointwise_map", "Pointwise detection mAP"),
          ("localisation_utility", "Localisation utility (AUPRC)"), ("iou", "IoU"))


def _number(value: Any, scale: float = 1.0, digits: int = 3) -> str:
    return "–" if value is None else f"{value * scale:.{digits}f}"


def table_rows(rows: list[dict[str, Any]]) -> tuple[list[list[str]], list[int]]:
    """Table 1's rows ``[measure, method, ours, paper R-18]`` and the indices of the bold ones
    (the best localisation utility of ours; of the paper's, GGCAM-or-Modified's maximum)."""
    lines, bold = [["measure", "method", "ours", "paper, ResNet-18 (%)"]], []
    for key, title in BLOCKS:
        paper = PAPER_RESNET18.get(key, {})
        if key == "classification_auc":
            chosen = [next(r for r in rows if r["model"] == model) for model in ("base", "wildcat")]
            names = {"base": "Baseline", "wildcat": "Modified"}
            for row in chosen:
                lines.append([title if row is chosen[0] else "", names[row["model"]],
                              _number(row[key]), _number(paper.get(row["model"]), digits=2)])
            continue
        best = max((r[key] for r in rows if r[key] is not None), default=None)
        for i, row in enumerate(rows):
            name = PAPER_NAMES.get(row["method"], row["method"])
            if key == "localisation_utility" and best is not None and row[key] == best:
                bold.append(len(lines))
            lines.append([title if i == 0 else "", f"{name} ({row['method']})", _number(row[key]),
                          _number(paper.get(name), digits=2)])
    return lines, bold


def _table(rows: list[dict[str, Any]]) -> Table:
    lines, bold = table_rows(rows)
    table = Table(lines)
    style = [("GRID", (0, 0), (-1, -1), 0.3, colors.grey), ("FONTSIZE", (0, 0), (-1, -1), 8),
             ("BACKGROUND", (0, 0), (-1, 0), colors.whitesmoke), ("ALIGN", (2, 1), (-1, -1), "RIGHT"),
             ("TOPPADDING", (0, 0), (-1, -1), 1), ("BOTTOMPADDING", (0, 0), (-1, -1), 1)]
    style += [("FONTNAME", (2, i), (2, i), "Helvetica-Bold") for i in bold]
    table.setStyle(TableStyle(style))
    return table


def _curves(history: list[dict[str, Any]], best: int) -> io.BytesIO | None:
    """Training and validation loss (binary cross-entropy) per epoch, the selected epoch circled."""
    if not history:
        return None
    figure, axis = plt.subplots(figsize=(6, 2.2))
    epochs = [h["epoch"] for h in history]
    for key, label in (("train_loss", "training"), ("valid_loss", "validation")):
        values = [h.get(key) for h in history]
        if any(v is not None for v in values):
            axis.plot(epochs, [float("nan") if v is None else v for v in values], label=label)
    if 1 <= best <= len(history) and history[best - 1].get("valid_loss") is not None:
        axis.plot([best], [history[best - 1]["valid_loss"]], "o", mfc="none", color="k", label="kept")
    axis.set(xlabel="epoch", ylabel="binary cross-entropy")
    axis.legend(fontsize=7)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=130, bbox_inches="tight")
    plt.close(figure)
    buffer.seek(0)
    return buffer


def write_wildcat_page(results: dict[str, Any], path: Path) -> Path:
    """Write the page for ``results`` (OUT/results.json of ``audit wildcat``) to ``path``."""
    styles = getSampleStyleSheet()
    block = results["wildcat"]
    options, training = block["options"], block["training"]
    k = f"k+ {options['k_max']:g}, k- {options['k_min']:g}"  # Helvetica has no superscript signs
    story = [
        Paragraph(f"audit wildcat: {escape(Path(results['model']['path']).name)}", styles["Heading2"]),
        Paragraph(escape(
            f"WILDCAT head (Durand et al. 2017) on the last spatial feature map ({block['cut']['layer']}, "
            f"{' × '.join(map(str, block['cut']['shape']))}): M = {options['maps']} maps per class, {k}, α = {options['alpha']:g}; "
            f"{'head only' if options['freeze_features'] else 'every layer'} trained with binary cross-entropy, Adam "
            f"(lr {options['lr']:g}, batch {options['batch_size']}), at most {options['epochs']} epochs, early stopping "
            f"with patience {options['patience']}: {training['epochs']} epochs, epoch {training['best_epoch']} kept. "
            f"{results['data']['train_images']} training, {results['data']['valid_images']} validation and "
            f"{results['data']['test_images']} test images; the audits explain the {block['target']} class."), styles["Normal"]),
        Spacer(1, 0.3 * cm),
        Paragraph(escape(block["summary"]["sentence"]), styles["Normal"]),
        Spacer(1, 0.3 * cm),
        _table(block["table"]),
        Paragraph(escape(
            "Aggarwal et al. (2020) Table 1 for this model, on the test images: the base model audited with the seven "
            "post-hoc methods, the WILDCAT model with its class map (Modified). Ours are fractions in [0, 1], the "
            "paper's percent, on RSNA pneumonia X-rays with a ResNet-18; bold: the best localisation utility. "
            "Localisation utility: mean over images of the AUPRC of the map's pixels against the region mask; "
            "pointwise detection: AP of the maps' maxima scored by the model's probability (images without a region "
            "are negatives). Every figure of either audit: `audit report OUT/base`, `audit report OUT/wildcat`."), styles["Normal"]),
    ]
    curves = _curves(training["history"], training["best_epoch"])
    if curves is not None:
        story += [Spacer(1, 0.2 * cm), Image(curves, width=11 * cm, height=4.1 * cm)]
    SimpleDocTemplate(str(path), pagesize=A4, topMargin=1.2 * cm, bottomMargin=1.2 * cm).build(story)
    return path
