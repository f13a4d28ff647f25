"""``audit compare BASE NEW``: side-by-side headline numbers of two runs, gated on ``delta.`` keys."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

OUTCOME_STYLES = {"pass": "green", "fail": "bold red", "skipped": "yellow"}


def compare(
    base: Path = typer.Argument(..., help="BASE run (e.g. the last release): results.json or its run folder."),
    new: Path = typer.Argument(..., help="NEW run: results.json or its run folder."),
    fail_on: list[str] = typer.Option([], "--fail-on", help="Exit 1 when EXPR holds, e.g. 'delta.performance.auc < -0.02' (delta. = NEW − BASE; plain keys read NEW). Repeatable; replaces the config file's fail_on."),
    allow_missing: Optional[bool] = typer.Option(None, "--allow-missing/--no-allow-missing", help="Skip checks whose metric has no value instead of failing them (default: the config file's allow_missing, else no)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Gate config (default: ./audit.toml, else the \\[tool.audit] table of ./pyproject.toml)."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write the checks as JUnit XML (one testcase per check)."),
    pdf: Optional[Path] = typer.Option(None, "--pdf", help="Write the comparison as a PDF page."),
    json_out: bool = typer.Option(False, "--json", help="Print the comparison and gate as JSON on stdout, everything else on stderr."),
) -> None:
    """Compare two runs side by side; with --fail-on, block a release that got worse (exit 1)."""
    from audit.report.output_folder import check_output_file, run_files
    from audit.errors import AuditError
    from audit.report.gate import evaluate_gate, gate_checks, write_junit
    from audit.report.gate.compare import compare_results, load_run
    from audit.report.results_file import dumps

    expressions, allow = gate_checks(fail_on, config, Path.cwd(), allow_missing, compare=True)
    base_results, base_path = load_run(base)
    new_results, new_path = load_run(new)
    inputs = [*run_files(base_results, base_path), *run_files(new_results, new_path)]
    for flag, target, default in (("--junit", junit, "junit.xml"), ("--pdf", pdf, "compare.pdf")):
        if target is not None:
            check_output_file(target, flag, default, inputs)
    if junit is not None and pdf is not None and junit.resolve() == pdf.resolve():
        raise AuditError(f"--pdf {pdf}: is also the --junit path; give two different files")
    comparison = compare_results(base_results, new_results, base_path, new_path)
    gate = evaluate_gate(new_results, expressions, allow, base=base_results)
    if junit is not None:
        write_junit(gate, junit)
    if pdf is not None:
        from audit.report.gate.compare_page import write_compare_pdf

        write_compare_pdf(comparison, gate, pdf)
    if json_out:
        sys.stdout.write(dumps({**comparison, "gate": gate}) + "\n")
    _print(Console(stderr=json_out, highlight=False), comparison, gate)
    if not gate["passed"]:
        raise typer.Exit(1)


def _print(console: Console, comparison: dict[str, Any], gate: dict[str, Any]) -> None:
    from audit.report.gate.compare_page import delta, number

    for label in ("base", "new"):
        side = comparison[label]
        console.print(Text(f"{label.upper()}: {side['model']} ({side['results']})"))
    for note in comparison["mismatches"]:
        console.print(Text(f"differs: {note}", style="yellow"))
    table = Table(title="BASE vs NEW (Δ = NEW − BASE)", title_justify="left")
    table.add_column("key", overflow="fold")
    for title in ("BASE", "NEW", "Δ"):
        table.add_column(title, justify="right")
    for row in comparison["rows"]:
        table.add_row(Text(row["key"]), number(row["base"]), number(row["new"]), delta(row), style="bold yellow" if row.get("changed") else None)
    console.print(table)
    if not gate["checks"]:
        console.print("gate: no checks")
        return
    checks = Table(title=f"gate: {'PASS' if gate['passed'] else 'FAIL'}", title_justify="left")
    for title in ("check", "value", "outcome", "reason"):
        checks.add_column(title, overflow="fold")
    for check in gate["checks"]:
        outcome = check["outcome"]
        checks.add_row(Text(check["expression"]), number(check["value"]), Text(outcome, style=OUTCOME_STYLES[outcome]), Text(check["reason"]))
    console.print(checks)


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)
