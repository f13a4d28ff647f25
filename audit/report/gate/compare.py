"""Align two runs (BASE, NEW) on their headline numbers, and state where they differ.

Rows cover the run (images, performance overall and by artefact subset, ablation, the finding's
level and code) and, for every method present in both runs, its headline metrics and sanity
status. A number's row has Δ = NEW − BASE; text has no Δ (null) and ``changed`` says whether
it differs, so a finding that moved from ``no_evidence`` to ``uses_artefact`` shows. A method in only one run gets no rows; it is
listed among the mismatches, as are different data (root, image count, classes), model
classes, target and method options: those rows are still shown, but compare different things.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from audit.errors import AuditError
from audit.report.gate.keys import MISSING, is_metric, is_value, kind_of, lookup
from audit.report.results_file import read_results

RUN_KEYS = (
    "finding.level",
    "finding.code",
    "data.images",
    "performance.accuracy",
    "performance.auc",
    "performance.by_artefact.present.accuracy",
    "performance.by_artefact.present.auc",
    "performance.by_artefact.absent.accuracy",
    "performance.by_artefact.absent.auc",
    "ablation.artefact.unchanged.mean",
    "ablation.artefact.delta_probability.mean",
    "ablation.region.unchanged.mean",
    "ablation.region.delta_probability.mean",
)
METHOD_KEYS = (
    "artefact.enrichment.overall",
    "artefact.peak_share.overall",
    "artefact.mean_saliency.overall",
    "aurrac.value",
    "aurrac.difference",
    "region.iou.mean",
    "region.pointing_game.mean",
    "region.relevance_mass.mean",
    "saliency_vs_ablation.spearman",
    "randomization.cascading.-1.spearman",
    "sanity.status",
)
TEXT_KEYS = ("finding.level", "finding.code", "sanity.status")  # the rows that hold text; every other row a number
MATCHED = ("data.root", "data.images", "data.classes", "model.classes", "target")
SECTIONS = ("model", "data", "methods", "performance", "ablation", "finding")


def results_path(given: Path) -> Path:
    """The results.json that ``given`` (the file, or the run folder that holds it) names; an
    AuditError that names ``given`` itself when there is none."""
    if given.is_dir():
        if not (given / "results.json").is_file():
            raise AuditError(f"{given}: this folder has no results.json; give a run folder written by `audit run`, or its results.json")
        return given / "results.json"
    if not given.exists():
        raise AuditError(f"{given}: not found (no such file or folder); give a results.json written by `audit run`, or its run folder")
    return given


def load_run(given: Path) -> tuple[dict[str, Any], Path]:
    """results.json and its path, from the file or from its run folder, with the types compare reads checked."""
    path = results_path(given)
    results = read_results(path)
    check_types(results, path)
    return results, path


def check_types(results: dict[str, Any], path: Path) -> None:
    """Refuse (AuditError naming the file and the key) a results.json whose sections are not objects
    or whose compared values are not what `audit run` writes: a finite number or null, text or null
    for the text rows."""
    for section in SECTIONS:
        if section in results and not isinstance(results[section], dict):
            raise _wrong(path, section, results[section], "an object")
    for name, entry in results.get("methods", {}).items():
        if not isinstance(entry, dict):
            raise _wrong(path, f"methods.{name}", entry, "an object")
    keys = [*RUN_KEYS, *(f"methods.{name}.{key}" for name in results.get("methods", {}) for key in METHOD_KEYS)]
    for key in keys:
        segments = key.split(".")
        for depth in range(1, len(segments)):
            parent = lookup(results, segments[:depth])
            if parent is not MISSING and parent is not None and not isinstance(parent, (dict, list)):
                raise _wrong(path, ".".join(segments[:depth]), parent, "an object")
        value = lookup(results, segments)
        if value is MISSING or value is None:
            continue
        if key.endswith(TEXT_KEYS):
            if not isinstance(value, str):
                raise _wrong(path, key, value, "text or null")
        elif not is_metric(value) or not math.isfinite(value):
            raise _wrong(path, key, value, "a finite number or null")


def _wrong(path: Path, key: str, value: Any, expected: str) -> AuditError:
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    return AuditError(f"{path}: {key} is {kind_of(value)} ({shown}), not {expected} as `audit run` writes it; "
                      f"rerun `audit run` for this model, or restore the file")


def compare_results(base: dict[str, Any], new: dict[str, Any], base_path: Path, new_path: Path) -> dict[str, Any]:
    """``{"base", "new", "methods", "mismatches", "rows"}``; rows are ``{"key", "base", "new", "delta"}``,
    with ``"changed"`` added to the rows of text values."""
    base_methods, new_methods = list(base.get("methods", {})), list(new.get("methods", {}))
    methods = [name for name in base_methods if name in new_methods]
    keys = [*RUN_KEYS, *(f"methods.{name}.{key}" for name in methods for key in METHOD_KEYS)]
    rows = [_row(key, base, new) for key in keys]
    return {
        "base": _side(base, base_path),
        "new": _side(new, new_path),
        "methods": methods,
        "mismatches": _mismatches(base, new, base_methods, new_methods, methods),
        "rows": [row for row in rows if row is not None],
    }


def _side(results: dict[str, Any], path: Path) -> dict[str, Any]:
    model = results.get("model", {})
    return {"results": str(path), "model": model.get("path"), "sha256": model.get("sha256"), "created": results.get("created")}


def _row(key: str, base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any] | None:
    segments = key.split(".")
    values = [lookup(base, segments), lookup(new, segments)]
    if any(isinstance(v, str) for v in values):
        b, n = (v if is_value(v) else None for v in values)
        return {"key": key, "base": b, "new": n, "delta": None, "changed": b != n}
    if not any(is_metric(v) for v in values):
        return None
    b, n = (v if is_metric(v) else None for v in values)
    return {"key": key, "base": b, "new": n, "delta": n - b if b is not None and n is not None else None}


def _mismatches(
    base: dict[str, Any], new: dict[str, Any], base_methods: list[str], new_methods: list[str], methods: list[str]
) -> list[str]:
    notes = []
    for side, names, other in (("BASE", base_methods, new_methods), ("NEW", new_methods, base_methods)):
        only = [name for name in names if name not in other]
        if only:
            notes.append(f"methods only in {side}: {', '.join(only)} (not compared)")
    for key in MATCHED:
        b, n = lookup(base, key.split(".")), lookup(new, key.split("."))
        if b != n:
            notes.append(f"{key} differs: BASE {_text(b)}, NEW {_text(n)}")
    for name in methods:
        if base["methods"][name].get("options") != new["methods"][name].get("options"):
            notes.append(
                f"methods.{name}.options differ: BASE {_text(base['methods'][name].get('options'))}, "
                f"NEW {_text(new['methods'][name].get('options'))}"
            )
    return notes


def _text(value: Any) -> str:
    return "absent" if value is MISSING else repr(value)
