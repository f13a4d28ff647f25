"""``audit report``: render the PDF again from a saved run, without recomputing anything."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def report(
    results: Path = typer.Argument(..., help="results.json written by `audit run`, or its folder."),
    out: Optional[Path] = typer.Option(None, "--out", help="PDF to write (default: report.pdf beside results.json)."),
) -> None:
    """Write the PDF bias report of a run (maps/ and per_image.csv are read from the run's folder)."""
    from audit.report.gate.compare import load_run
    from audit.report.pdf import write_report
    from audit.report.output_folder import check_output_file, replace_output, run_files
    from audit.report.pdf.document import check_results
    from audit.report.results_file import write_results

    data, path = load_run(results)
    check_results(data, path)  # names the file given (write_report names RUN/results.json)
    folder = path.parent
    target = out or folder / "report.pdf"
    inputs = [p for p in run_files(data, path) if p.resolve() != (folder / "report.pdf").resolve()]
    check_output_file(target, "--out", "report.pdf", inputs)
    if target.resolve() == (folder / "report.pdf").resolve() and path.name == "results.json" and "run" in data:
        written = replace_output(folder, "results.json", "report.pdf", lambda staged: write_report(data, folder, staged), write_results)
    else:
        written = write_report(data, folder, target)
    typer.echo(f"report: {written}")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
