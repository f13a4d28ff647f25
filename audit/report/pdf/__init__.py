"""The PDF report of an ``audit run``: ``write_report(results, run_dir, out)``.

reportlab lays out the pages; matplotlib draws the figures in memory. Modules: ``document``
(assembly), ``first_page`` (with the finding of ``audit.report.finding``), ``fig_*`` (one family
of figures each), ``appendix`` and ``definitions``, ``inputs`` (maps and per-image table),
``plot``, ``style`` and ``text`` (escaping and number formatting).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_report(results: dict[str, Any], run_dir: Path, out: Path) -> Path:
    """Write the PDF for ``results`` (a results.json dict) to ``out``; ``run_dir`` holds
    ``maps/`` and ``per_image.csv``. Raises ``AuditError`` for results it cannot read."""
    from audit.report.pdf.document import write_report as write

    return write(results, run_dir, out)


__all__ = ["write_report"]
