"""Text for the report: escaping for reportlab and matplotlib, number formatting, lookups.

Every name that comes from the user (paths, class names, layer names, the command line) goes
through ``escape`` before it reaches a reportlab ``Paragraph`` and through ``plain`` before it
reaches matplotlib, so ``<b>&co`` or ``$x$`` is shown as typed and never read as markup.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any
from xml.sax.saxutils import escape as _xml_escape

NA = "n/a"


def escape(value: Any) -> str:
    """``value`` as text that a reportlab Paragraph shows literally."""
    return _xml_escape(str(value), {'"': "&quot;"})


SEPARATORS = re.compile(r"(?<=[-._/])")


def escape_wrapped(value: Any, width: float, font: str, size: float) -> str:
    """``escape(value)`` with a line break (``<br/>``) before any word that would overflow
    ``width`` points, placed after a hyphen, dot, underscore or slash: reportlab would otherwise
    cut such a word between two letters ("input-x-g / radient", "enrichmen / t")."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    words = []
    for word in str(value).split(" "):
        lines, line = [], ""
        for piece in SEPARATORS.split(word):
            if line and stringWidth(line + piece, font, size) > width:
                lines.append(line)
                line = ""
            line += piece
        words.append("<br/>".join(escape(part) for part in [*lines, line]))
    return " ".join(words)


def plain(value: Any) -> str:
    """``value`` as text that matplotlib shows literally (no mathtext between ``$`` signs)."""
    return str(value).replace("$", r"\$")


def get(entry: Any, *keys: str | int) -> Any:
    """``entry[k1][k2]…``, or None where a level is missing."""
    for key in keys:
        if isinstance(entry, dict):
            entry = entry.get(key)
        elif isinstance(entry, list) and isinstance(key, int) and -len(entry) <= key < len(entry):
            entry = entry[key]
        else:
            return None
    return entry


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def number(value: Any, digits: int = 3) -> str:
    """A float with ``digits`` decimals (as the terminal summary prints it), an int as is, else n/a."""
    if isinstance(value, bool) or not is_number(value):
        return NA
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def percent(value: Any, digits: int = 1) -> str:
    """A share in [0, 1] as a percentage: 0.5 → 50.0%."""
    return f"{100 * value:.{digits}f}%" if is_number(value) else NA


def interval(ci: Any, digits: int = 3, scale: str = "number") -> str:
    """A 95% interval [low, high] as ``low–high`` (``low to high`` when a bound is negative); empty when missing."""
    if not isinstance(ci, (list, tuple)) or len(ci) != 2 or not all(is_number(v) for v in ci):
        return ""
    show = percent if scale == "percent" else number
    return f"{show(ci[0], digits)}{' to ' if min(ci) < 0 else '–'}{show(ci[1], digits)}"


def with_interval(value: Any, ci: Any, digits: int = 3, scale: str = "number") -> str:
    """``5.933 (95% CI 5.411–6.454)``, the value alone without an interval, n/a without a value."""
    show = percent if scale == "percent" else number
    text = show(value, digits)
    bounds = interval(ci, digits, scale)
    return f"{text} (95% CI {bounds})" if bounds and text != NA else text


def p_value(value: Any) -> str:
    if not is_number(value):
        return NA
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def shorten(value: Any, limit: int) -> str:
    """Keep the end of a long path or name (where the file name is), marked with an ellipsis."""
    text = str(value)
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def clip(value: Any, limit: int) -> str:
    """Keep the start of a long text, marked with an ellipsis: a table cell cannot split across
    pages, so text from the user (a name, a path, a reason) is bounded before it goes in one."""
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def bounded_list(items: list[Any], limit: int, each: int = 40) -> str:
    """``a, b, c, … and 997 more``: at most ``limit`` items, each clipped to ``each`` characters."""
    shown = ", ".join(clip(item, each) for item in items[:limit])
    return shown + (f", … and {len(items) - limit} more" if len(items) > limit else "")


def timestamp(value: Any) -> str:
    """An ISO time as ``22 Nov 2026, 01:20 UTC``; anything else as given."""
    try:
        moment = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc)
    return moment.strftime("%d %b %Y, %H:%M") + (" UTC" if moment.tzinfo is not None else "")
