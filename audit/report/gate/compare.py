"""Align two runs (BASE, NEW) on their headline numbers, and state where they differ.

Rows cover the run (images, performance overall and by artefact subset, ablation, the finding's
level and code) and, for every method present in both runs, its headline metrics and sanity
status. A number's row has Δ = NEW − BASE; text has no Δ (null) and ``changed`` says whether
it differs, so a finding that moved from ``no_evidence`` to ``uses_artefact`` shows. A method in only one run gets no rows; it is
listed among the mismatches, as are different data (root, image count, classes), model
classes, target and method options: those rows are still shown, but compare different things.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from audit.report.gate.keys import MISSING, is_metric, is_value, lookup
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
MATCHED = ("data.root", "data.images", "data.classes", "model.classes", "target")


def load_run(path: Path) -> tuple[dict[str, Any], Path]:
    """results.json and its path, from the file or from its run folder."""
    results = read_results(path)
    return results, path / "results.json" if path.is_dir() else path


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
