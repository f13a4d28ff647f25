"""The terminal summary of a run (rich)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _get(entry: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(entry, dict):
            return None
        entry = entry.get(key)
    return entry


HEADLINES = (
    ("enrichment", ("artefact", "enrichment", "overall")),
    ("peak share", ("artefact", "peak_share", "overall")),
    ("AURRAC", ("aurrac", "value")),
    ("AURRAC − acc.", ("aurrac", "difference")),
    ("IoU", ("region", "iou", "mean")),
    ("pointing", ("region", "pointing_game", "mean")),
    ("sanity", ("sanity", "status")),
)
CAPTION = (
    "enrichment: share of |saliency| on the artefact over its share of the area (1 = chance); "
    "peak share: share of the top 2% pixels on the artefact; IoU and pointing game against the region masks; "
    "sanity: the randomisation check (a failed method is not counted in the finding)"
)


def _methods_table(methods: dict[str, Any]) -> Table:
    table = Table(title="saliency metrics per method", title_justify="left", caption=CAPTION, caption_justify="left")
    table.add_column("method", style="bold")
    for title, _ in HEADLINES:
        table.add_column(title, justify="right")
    for name, entry in methods.items():
        table.add_row(name, *(_number(_get(entry, *keys)) for _, keys in HEADLINES))
    return table


def _gate_table(gate: dict[str, Any]) -> Table:
    table = Table(title=f"gate: {'PASS' if gate['passed'] else 'FAIL'}", title_justify="left")
    for column in ("check", "value", "outcome"):
        table.add_column(column)
    for check in gate["checks"]:
        style = {"pass": "green", "fail": "bold red"}.get(check["outcome"], "yellow")
        outcome = check["outcome"] + (f" ({check['reason']})" if check.get("reason") else "")
        table.add_row(Text(check["expression"]), _number(check.get("value")), Text(outcome, style=style))
    return table


def print_failed_checks(gate: dict[str, Any]) -> None:
    """Every failed gate check, one line each, on stderr, whatever ``--quiet`` hides: an exit
    code of 1 always comes with its reasons."""
    err = Console(stderr=True, highlight=False)
    for check in gate["checks"]:
        if check["outcome"] == "fail":
            err.print(f"audit: gate: FAIL {check['expression']}: {check['reason']}", markup=False, soft_wrap=True)


def print_summary(console: Console, results: dict[str, Any], out: Path, report: Path | None = None) -> None:
    model, data, performance = results["model"], results["data"], results["performance"]
    table = Table(title=f"audit: {model['path']} ({model['format']})", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("images", f"{data['images']} ({len(data['skipped'])} skipped)")
    table.add_row("with artefact mask", str(data["with_artefact"]))
    table.add_row("with region mask", str(data["with_region"]))
    table.add_row("accuracy", _number(performance["accuracy"]))
    table.add_row("AUROC", _number(performance["auc"]))
    console.print(table)
    if results["methods"]:
        console.print(_methods_table(results["methods"]))
    if "finding" in results:
        console.print(Text(f"finding ({results['finding']['code']}): {results['finding']['sentence']}", style="bold"))
    if "gate" in results:
        console.print(_gate_table(results["gate"]))
    written = [out / "results.json", out / "per_image.csv", *([report] if report else [])]
    console.print("results: " + ", ".join(map(str, written)), highlight=False, markup=False)
