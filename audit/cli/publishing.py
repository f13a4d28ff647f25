"""What ``audit run`` and ``audit merge`` do with a whole run's results: the gate, the JUnit file,
the PDF report, publishing OUT, and what they print. One code path, so a merged run is gated,
reported and published exactly as a run over the whole dataset is."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from audit.errors import AuditError
from audit.report.output_folder import OutputFolder

# The options of every command that publishes a whole run (`audit run`, `audit merge`).
FailOn = Annotated[list[str], typer.Option("--fail-on", help="Fail (exit 1) when this holds, e.g. 'methods.gradient.artefact.enrichment.overall > 2' (repeatable).")]
AllowMissing = Annotated[Optional[bool], typer.Option("--allow-missing/--no-allow-missing", help="A check on a null metric is skipped instead of failing.")]
GateConfig = Annotated[Optional[Path], typer.Option("--config", help="Gate config (default: audit.toml or \\[tool.audit] in pyproject.toml here).")]
Junit = Annotated[Optional[Path], typer.Option("--junit", help="Write the gate checks as JUnit XML.")]
Report = Annotated[Optional[Path], typer.Option("--report", help="PDF report path (default OUT/report.pdf).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print results.json to stdout, everything else to stderr.")]


@dataclass(frozen=True)
class Gate:
    """The ``--fail-on`` checks (CLI over config file) and ``allow_missing``."""

    expressions: list[str]
    allow: bool

    @classmethod
    def parse(cls, fail_on: list[str], config: Optional[Path], allow_missing: Optional[bool], methods: list[str]) -> Gate:
        """Syntax-checked, before any work; a ``methods.X`` key must name a method of the run."""
        from audit.report.gate import gate_checks, validate_expressions
        from audit.report.gate.expressions import Group

        expressions, allow = gate_checks(fail_on, config, Path.cwd(), allow_missing)
        validate_expressions(expressions, groups={"methods": Group("method", "--method", methods)})
        return cls(expressions, allow)

    def check_keys(self, outline: dict[str, Any]) -> None:
        """Refuse, before any image is read, a key that no run shaped like ``outline``
        (``audit.pipeline.results_outline``) has, naming the closest valid key; a key the data
        decides (a list entry, a class name) is checked as far as the outline goes."""
        from audit.report.gate.expressions import parse_expression
        from audit.report.gate.keys import closest_key, outline_lacks, value_keys

        for expression in self.expressions:
            check = parse_expression(expression)
            if not check.is_delta and outline_lacks(outline, check.segments):
                closest = closest_key(check.key, value_keys(outline))
                hint = f"; the closest valid key is {closest!r}" if closest else ""
                raise AuditError(f"gate check {expression!r}: no key {check.key!r} in this run's results{hint} "
                                 f"(checked before any image was read)")


@dataclass(frozen=True)
class Destinations:
    """Where the PDF report and the JUnit file go (staged when inside OUT)."""

    report: Path
    junit: Path | None

    @classmethod
    def of(cls, folder: OutputFolder, report: Optional[Path], junit: Optional[Path]) -> Destinations:
        report_path = folder.destination(report, "report.pdf", "--report")
        junit_path = None if junit is None else folder.destination(junit, "junit.xml", "--junit")
        if junit_path is not None and junit_path.resolve() == report_path.resolve():
            raise AuditError(f"--junit {junit}: is also the --report path; give two different files")
        return cls(report_path, junit_path)


def publish_run(results: dict[str, Any], folder: OutputFolder, gate: Gate, where: Destinations, quiet: bool = True) -> None:
    """Evaluate the gate into ``results``, write the JUnit file and the PDF (a "report" progress
    bar on stderr unless ``quiet``), publish OUT."""
    from audit.report.gate import evaluate_gate, write_junit
    from audit.report.pdf import write_report
    from audit.report.results_file import write_results

    if gate.expressions:
        results["gate"] = evaluate_gate(results, gate.expressions, gate.allow)
    if where.junit is not None:
        write_junit(results.get("gate", {"checks": [], "passed": True, "allow_missing": gate.allow}), where.junit)
    with Progress(TextColumn("report"), BarColumn(), TimeElapsedColumn(), console=Console(stderr=True), disable=quiet,
                  transient=True) as progress:
        progress.add_task("report", total=None)
        write_report(results, folder.staging, where.report)
    folder.publish(results, write_results)


def announce(results: dict[str, Any], out: Path, report: Path, gate: Gate, json_out: bool, quiet: bool) -> None:
    """Print the warnings, results.json (``--json``) and the summary; exit 1 when the gate failed."""
    from audit.cli.summary import print_failed_checks, print_summary
    from audit.report.results_file import dumps

    err = Console(stderr=True)
    for warning in results["warnings"]:
        err.print(f"audit: warning: {warning}", highlight=False, markup=False, soft_wrap=True)
    if json_out:
        sys.stdout.write(dumps(results) + "\n")
    if not quiet:
        print_summary(Console(stderr=json_out), results, out, report)
    if gate.expressions and not results["gate"]["passed"]:
        print_failed_checks(results["gate"])
        raise typer.Exit(1)
