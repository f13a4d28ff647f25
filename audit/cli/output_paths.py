"""Output files chosen on the command line (``audit report -o``, ``audit compare --pdf/--junit``):
refused, before any work, when they cannot be written or would destroy an input.

A path is refused when it is a folder, lies below a file, or is (symlinks resolved) one of the
files the command reads: a results.json given, or any file its ``run.outputs`` lists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from audit.errors import AuditError
from audit.report.output_folder import safe_relative


def run_files(results: dict[str, Any], path: Path) -> list[Path]:
    """results.json at ``path`` and every file beside it that its ``run.outputs`` lists."""
    run = results.get("run")
    outputs = run.get("outputs") if isinstance(run, dict) else None
    listed = [path.parent / safe for name in (outputs or {}) if (safe := safe_relative(name)) is not None]
    return [path, *listed]


def check_output_file(target: Path, flag: str, default: str, inputs: Iterable[Path]) -> None:
    """AuditError (one line naming ``flag`` and ``target``) unless ``target`` can be written as a
    new file that overwrites none of ``inputs``."""
    if target.is_dir():
        raise AuditError(f"{flag} {target}: is a folder; give a file path, e.g. {target / default}")
    for parent in target.parents:
        if parent.exists() and not parent.is_dir():
            raise AuditError(f"{flag} {target}: lies below the file {parent}; give another path")
    resolved = target.resolve()
    for other in inputs:
        if resolved == other.resolve():
            raise AuditError(f"{flag} {target}: is an input ({other}) and would be overwritten; give another path")
