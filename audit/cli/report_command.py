"""``audit report``: render the PDF again from a saved run, without recomputing anything."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def report(
    results: Path = typer.Argument(..., help="results.json written by `audit run`, or its folder."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="PDF to write (default: report.pdf beside results.json)."),
) -> None:
    """Write the PDF bias report of a run (maps/ and per_image.csv are read from the run's folder)."""
    from audit.report.pdf import write_report
    from audit.report.results_file import read_results

    path = results / "results.json" if results.is_dir() else results
    data = read_results(path)
    written = write_report(data, path.parent, out or path.parent / "report.pdf")
    typer.echo(f"report: {written}")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
