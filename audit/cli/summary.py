"""The terminal summary of a run (rich)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def print_summary(console: Console, results: dict[str, Any], out: Path) -> None:
    model, data, performance = results["model"], results["data"], results["performance"]
    table = Table(title=f"audit: {model['path']} ({model['format']})", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("images", f"{data['images']} ({len(data['skipped'])} skipped)")
    table.add_row("with artefact mask", str(data["with_artefact"]))
    table.add_row("with region mask", str(data["with_region"]))
    table.add_row("accuracy", _number(performance["accuracy"]))
    table.add_row("AUROC", _number(performance["auc"]))
    table.add_row("methods", ", ".join(results["methods"]) or "none")
    console.print(table)
    console.print(f"results: {out / 'results.json'}, {out / 'per_image.csv'}", highlight=False)
