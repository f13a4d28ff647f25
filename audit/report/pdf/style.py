"""One look for the whole report: fonts, colours and paragraph styles.

Text and figures both use DejaVu Sans (shipped with matplotlib), so the PDF and the plots
share one typeface and every symbol used (ρ, τ, ≥, ×, −) has a glyph. Colours are the
Okabe–Ito palette, distinguishable with the common colour-vision deficiencies; the artefact is
always vermilion, the region always blue, and each method keeps its colour in every figure.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from reportlab.lib import colors
from reportlab.lib.styles import ParagraphStyle
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

FONT, BOLD, ITALIC, MONO = "DejaVuSans", "DejaVuSans-Bold", "DejaVuSans-Oblique", "DejaVuSansMono"

ARTEFACT = "#D55E00"  # vermilion
REGION = "#56B4E9"  # sky blue
NEUTRAL = "#555555"
GRID = "#DDDDDD"
METHOD_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
PASS, FAIL, WARN, INFO = "#1B7837", "#B2182B", "#B35806", "#2B5C8A"


def method_colour(index: int) -> str:
    return METHOD_COLOURS[index % len(METHOD_COLOURS)]


@lru_cache(maxsize=1)
def register_fonts() -> None:
    """Register DejaVu Sans (regular, bold, oblique) and DejaVu Sans Mono with reportlab."""
    import matplotlib
    from reportlab.lib.fonts import addMapping

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    for name in (FONT, BOLD, ITALIC, MONO):
        pdfmetrics.registerFont(TTFont(name, str(folder / f"{name}.ttf")))
    addMapping(FONT, 0, 0, FONT)
    addMapping(FONT, 1, 0, BOLD)
    addMapping(FONT, 0, 1, ITALIC)
    addMapping(FONT, 1, 1, BOLD)


def _style(name: str, **kwargs) -> ParagraphStyle:
    base = {"fontName": FONT, "fontSize": 8.5, "leading": 11.5, "textColor": colors.HexColor("#222222")}
    return ParagraphStyle(name, **{**base, **kwargs})


STYLES = {
    "title": _style("title", fontName=BOLD, fontSize=17, leading=21, spaceAfter=2),
    "subtitle": _style("subtitle", fontSize=9, leading=12, textColor=colors.HexColor(NEUTRAL), spaceAfter=8),
    "h1": _style("h1", fontName=BOLD, fontSize=12.5, leading=16, spaceBefore=10, spaceAfter=4),
    "h2": _style("h2", fontName=BOLD, fontSize=9.5, leading=12.5, spaceBefore=8, spaceAfter=3),
    "body": _style("body", spaceAfter=4),
    "small": _style("small", fontSize=7.5, leading=9.5),
    "note": _style("note", fontSize=7, leading=9, textColor=colors.HexColor(NEUTRAL)),
    "cell": _style("cell", fontSize=7.5, leading=9.5),
    "cell_right": _style("cell_right", fontSize=7.5, leading=9.5, alignment=2),
    "cell_head": _style("cell_head", fontName=BOLD, fontSize=7.5, leading=9.5),
    "cell_head_right": _style("cell_head_right", fontName=BOLD, fontSize=7.5, leading=9.5, alignment=2),
    "mono": _style("mono", fontName=MONO, fontSize=7, leading=9),
    "finding": _style("finding", fontSize=10, leading=14, textColor=colors.white),
    "caption_title": _style("caption_title", fontName=BOLD, fontSize=8.5, leading=11, spaceBefore=3),
    "caption": _style("caption", fontSize=7.5, leading=10, textColor=colors.HexColor("#333333"), spaceAfter=10),
    "missing": _style("missing", fontSize=8.5, leading=12, textColor=colors.HexColor(WARN), alignment=1),
}
