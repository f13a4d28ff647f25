"""The PDF page of ``audit compare``: both runs, the mismatches, the gate, then the rows (reportlab).

Every name and path goes through ``escape`` before it reaches a Paragraph, so ``<`` or ``&`` in
a file or class name is shown as text, never read as markup.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from audit.report.pdf.text import clip

CHANGED = colors.HexColor("#b35806")  # a text row (the finding, a sanity status) that differs
OUTCOME_COLOURS = {"pass": colors.HexColor("#1a7f37"), "fail": colors.HexColor("#cf222e"), "skipped": colors.grey}


def number(value: Any) -> str:
    """Numbers to four significant decimals, text as it is, absent values to ``n/a``."""
    if value is None:
        return "n/a"
    return str(value) if isinstance(value, (int, str)) else f"{value:.4g}"


def signed(value: Any) -> str:
    return "n/a" if value is None else f"{value:+.4g}"


def delta(row: dict[str, Any]) -> str:
    """The Δ column: NEW − BASE for numbers, "changed" or "same" for text."""
    if "changed" in row:
        return "changed" if row["changed"] else "same"
    return signed(row["delta"])


def write_compare_pdf(comparison: dict[str, Any], gate: dict[str, Any] | None, path: Path) -> Path:
    styles = getSampleStyleSheet()
    small = styles["BodyText"].clone("small", fontSize=8, leading=10)
    story: list[Any] = [Paragraph("audit compare", styles["Title"])]
    for label in ("base", "new"):
        side = comparison[label]
        story.append(Paragraph(
            f"<b>{label.upper()}</b>: {escape(str(side['model']))} (sha256 {escape(str(side['sha256'])[:12])}…, "
            f"{escape(str(side['created']))}); results {escape(side['results'])}",
            small,
        ))
    story.append(Spacer(1, 3 * mm))
    if comparison["mismatches"]:
        story.append(Paragraph("<b>The runs differ</b> (rows for what differs compare different things):", small))
        story += [Paragraph(f"• {escape(clip(note, 1000))}", small) for note in comparison["mismatches"]]
    else:
        story.append(Paragraph("Same data, classes, target and methods in both runs.", small))
    # the verdict first, on page 1: below a long table of rows it spilled onto page 2 on its own
    story += [Spacer(1, 3 * mm), *_gate_part(gate, styles, small), _rows_table(comparison["rows"]), Spacer(1, 4 * mm)]
    story.append(Paragraph(f"Written {dt.datetime.now().isoformat(timespec='seconds')}. Δ = NEW − BASE.", small))
    path.parent.mkdir(parents=True, exist_ok=True)
    SimpleDocTemplate(str(path), pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm,
                      topMargin=12 * mm, bottomMargin=12 * mm, title="audit compare").build(story)
    return path


def _rows_table(rows: list[dict[str, Any]]) -> Table:
    data = [["key", "BASE", "NEW", "Δ"]] + [[r["key"], number(r["base"]), number(r["new"]), delta(r)] for r in rows]
    table = Table(data, colWidths=[110 * mm, 22 * mm, 22 * mm, 22 * mm], repeatRows=1)
    table.setStyle(TableStyle([
        ("FONTSIZE", (0, 0), (-1, -1), 7.5),
        ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"),
        ("ALIGN", (1, 0), (-1, -1), "RIGHT"),
        ("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.black),
        ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f2f2f2")]),
        ("TOPPADDING", (0, 0), (-1, -1), 1),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
    ] + [(command, (0, i), (-1, i), value) for i, r in enumerate(rows, start=1) if r.get("changed")
         for command, value in (("FONTNAME", "Helvetica-Bold"), ("TEXTCOLOR", CHANGED))]))
    return table


def _gate_part(gate: dict[str, Any] | None, styles: Any, small: Any) -> list[Any]:
    if gate is None or not gate["checks"]:
        return [Paragraph("Gate: no checks (no gate).", styles["Heading3"])]
    verdict = "PASS" if gate["passed"] else "FAIL"
    data = [["check", "value", "outcome", "reason"]] + [
        [Paragraph(escape(clip(c["expression"], 500)), small), number(c["value"]), c["outcome"].upper(), Paragraph(escape(clip(c["reason"], 500)), small)]
        for c in gate["checks"]
    ]
    table = Table(data, colWidths=[62 * mm, 18 * mm, 16 * mm, 84 * mm], repeatRows=1)
    style = [
        ("FONTSIZE", (0, 0), (-1, -1), 8),
        ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.black),
    ]
    style += [("TEXTCOLOR", (2, i), (2, i), OUTCOME_COLOURS[c["outcome"]]) for i, c in enumerate(gate["checks"], start=1)]
    table.setStyle(TableStyle(style))
    colour = OUTCOME_COLOURS["pass" if gate["passed"] else "fail"]
    heading = Paragraph(f"Gate: {verdict}", styles["Heading3"].clone("verdict", textColor=colour))
    return [heading, table, Spacer(1, 3 * mm)]
