"""``audit merge PART... --out OUT``: the parts of a sharded run into the outputs of one run."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

from audit.cli.publishing import AllowMissing, FailOn, GateConfig, JsonOut, Junit, Quiet, Report
from audit.cli.run_command import RUN_OUTPUTS


def merge(
    parts: list[Path] = typer.Argument(..., help="The part folders `audit run ... --shard I/N --out PART` wrote, all N of them."),
    out: Path = typer.Option(Path("audit-out"), "--out", help="Output folder: results.json, per_image.csv, maps, report.pdf."),
    fail_on: FailOn = [],
    allow_missing: AllowMissing = None,
    config: GateConfig = None,
    junit: Junit = None,
    report: Report = None,
    quiet: Quiet = False,
    json_out: JsonOut = False,
) -> None:
    """Merge the parts of a sharded run (`audit run --shard I/N`) into the results of one run."""
    from audit.cli.publishing import Destinations, Gate, announce, publish_run
    from audit.report.output_folder import OutputFolder
    from audit.shards.merge import merge_parts, methods_of, read_parts

    checked = read_parts(parts)
    gate = Gate.parse(fail_on, config, allow_missing, methods_of(checked))
    with OutputFolder(out, "results.json", reserved=RUN_OUTPUTS, inputs=tuple(parts)) as folder:
        where = Destinations.of(folder, report, junit)
        results = merge_parts(checked, folder.staging, command=shlex.join(["audit", *sys.argv[1:]]))
        publish_run(results, folder, gate, where, quiet)
    announce(results, out, folder.published(where.report), gate, json_out, quiet)


def register(app: typer.Typer) -> None:
    app.command("merge")(merge)
