"""Assembly: the first page, the figures in sections, the appendix; A4 with page numbers."""

from __future__ import annotations

import io
import json
from pathlib import Path, PurePath
from typing import Any

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import inch, mm
from reportlab.pdfgen import canvas
from reportlab.platypus import Flowable, Image, KeepTogether, PageBreak, Paragraph, SimpleDocTemplate, Table, TableStyle

from audit.errors import AuditError
from audit.report.pdf import fig_counterfactuals, fig_examples, fig_localisation, fig_performance, fig_randomisation, fig_saliency, style
from audit.report.pdf.appendix import appendix
from audit.report.pdf.first_page import WIDTH, P, first_page
from audit.report.pdf.inputs import RunFiles, load_run_files
from audit.report.pdf.plot import Figure
from audit.report.pdf.style import STYLES
from audit.report.pdf.text import clip, escape, get
from audit.report.results_file import dumps

MARGIN = 18 * mm
FRAME_HEIGHT = A4[1] - 2 * MARGIN - 6 * mm
REQUIRED = ("model", "data", "performance", "methods")


def check_results(results: Any, source: Path) -> None:
    """Raise AuditError unless ``results`` has what the report reads."""
    if not isinstance(results, dict):
        raise AuditError(f"{source}: not an audit results object; rerun `audit run`")
    missing = [key for key in REQUIRED if not isinstance(results.get(key), dict)]
    if missing:
        raise AuditError(f"{source}: missing {', '.join(missing)}; rerun `audit run` to write a complete results.json")


def sections(results: dict[str, Any], files: RunFiles) -> list[tuple[str, str, list[Figure]]]:
    """(heading, introduction, figures) in reading order."""
    return [
        ("1. Saliency on the artefact", "How much of each method's saliency falls on the artefact, per class.",
         [fig_saliency.global_saliency(results), fig_saliency.enrichment(results), fig_saliency.peak_share(results, files)]),
        ("2. Does the artefact change the predictions?", "The model's behaviour with and without the artefact, "
         "and whether the saliency maps predict it.",
         [fig_performance.performance(results), fig_performance.ablation(results), fig_performance.aurrac(results)]),
        ("3. Does the map point at the region that matters?", "Agreement of each method's map with the region masks.",
         [fig_localisation.localisation(results, files)]),
        ("4. Can the maps be trusted?", "Whether each method's maps depend on what the model learned.",
         [fig_randomisation.randomisation(results)]),
        ("5. What the maps look like", "Average maps per class and individual images.",
         [fig_saliency.mean_maps(results, files), *fig_examples.examples(results, files)]),
        *fig_counterfactuals.sections(results, files),
    ]


def _image(figure: Figure) -> Image:
    width, height = figure.width_in * inch, figure.height_in * inch
    scale = min(1.0, WIDTH / width, (FRAME_HEIGHT - 40 * mm) / height)
    image = Image(io.BytesIO(figure.png), width=width * scale, height=height * scale)
    image.hAlign = "CENTER"
    return image


def _placeholder(reason: str) -> Table:
    box = Table([[Paragraph(escape(clip(reason, 300)), STYLES["missing"])]], colWidths=[WIDTH], rowHeights=[22 * mm])
    box.setStyle(TableStyle([
        ("BOX", (0, 0), (-1, -1), 0.6, colors.HexColor(style.WARN)),
        ("BACKGROUND", (0, 0), (-1, -1), colors.HexColor("#FFF7EE")),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
    ]))
    return box


def figure_block(number: int, figure: Figure, heading: list[Flowable] = ()) -> KeepTogether:
    """The figure (or why it is missing), its numbered title and caption, kept on one page with ``heading``."""
    body: list[Flowable] = [*heading, _image(figure) if figure.png else _placeholder(figure.missing)]
    body.append(P(f"Figure {number}. {escape(figure.title)}", "caption_title"))
    caption = escape(figure.caption)
    if figure.notes:
        caption += "".join(f"<br/><font color='{style.NEUTRAL}'>{escape(note)}</font>" for note in figure.notes)
    body.append(P(caption, "caption"))
    return KeepTogether(body)


def story(results: dict[str, Any], files: RunFiles) -> list[Flowable]:
    flowables = first_page(results)
    number = 0
    for index, (heading, introduction, figures) in enumerate(sections(results, files)):
        if index == 0:
            flowables.append(PageBreak())
        title = [P(escape(heading), "h1"), P(escape(introduction), "small")]
        for f, figure in enumerate(figures):
            number += 1
            flowables.append(figure_block(number, figure, title if f == 0 else []))
    return flowables + [PageBreak(), *appendix(results)]


def _footer_canvas(footer: str) -> type[canvas.Canvas]:
    """A canvas that writes "page N of M" and ``footer`` once the page count is known."""

    class Numbered(canvas.Canvas):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:  # noqa: N802 (reportlab's name)
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            for state in self._pages:
                self.__dict__.update(state)
                self.setFont(style.FONT, 7)
                self.setFillColor(colors.HexColor(style.NEUTRAL))
                self.drawString(MARGIN, 10 * mm, footer)
                self.drawRightString(A4[0] - MARGIN, 10 * mm, f"page {self._pageNumber} of {len(self._pages)}")
                super().showPage()
            super().save()

    return Numbered


def write_report(results: dict[str, Any], run_dir: Path, out: Path) -> Path:
    """Write the PDF report of ``results`` to ``out``; ``run_dir`` holds ``maps/`` and ``per_image.csv``."""
    run_dir, out = Path(run_dir), Path(out)
    check_results(results, run_dir / "results.json")
    results = json.loads(dumps(results))  # exactly what results.json holds: plain numbers, NaN as null
    style.register_fonts()
    files = load_run_files(run_dir, list(results["methods"]))
    model = PurePath(str(get(results, "model", "path") or "model")).name
    sha = str(get(results, "model", "sha256") or "")[:12]
    version = get(results, "tool", "version") or ""
    footer = f"audit {version} · {model} · sha256 {sha}…"
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.name + ".tmp")
    document = SimpleDocTemplate(
        str(temporary), pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN, bottomMargin=MARGIN + 4 * mm,
        title=f"Artefact audit: {model}", author="audit", subject="Saliency audit of an image classifier",
    )
    try:
        document.build(story(results, files), canvasmaker=_footer_canvas(footer))
        temporary.replace(out)
    finally:
        temporary.unlink(missing_ok=True)
    return out
