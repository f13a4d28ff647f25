"""What the figures read besides results.json: ``maps/<method>.npz`` and ``per_image.csv``.

Either may be missing (a results.json copied on its own); then ``reason`` says so and the
figures that need it show that reason in place of the plot.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

GROUPS = ("most_artefact_salient", "least_artefact_salient", "misclassified")
FIELDS = ("path", "label", "prediction", "score", "image", "map", "artefact", "region")


@dataclass
class Maps:
    """One method's kept maps: the mean map per class and three groups of examples."""

    mean_by_class: np.ndarray
    count_by_class: np.ndarray
    groups: dict[str, dict[str, np.ndarray]]
    #: (K, H, W, C) and (K, H, W); None in maps written before they were kept
    mean_image_by_class: np.ndarray | None = None
    artefact_share_by_class: np.ndarray | None = None


@dataclass
class RunFiles:
    """Maps per method (or why not) and the per-image table (or why not)."""

    maps: dict[str, Maps] = field(default_factory=dict)
    maps_missing: dict[str, str] = field(default_factory=dict)
    per_image: pd.DataFrame | None = None
    per_image_missing: str = ""
    run_dir: Path | None = None

    def maps_reason(self, method: str) -> str:
        return self.maps_missing.get(method, "")


def _load_maps(path: Path) -> Maps:
    with np.load(path, allow_pickle=False) as data:
        groups = {group: {name: data[f"{group}/{name}"] for name in FIELDS} for group in GROUPS}
        optional = {name: data[name] if name in data.files else None for name in ("mean_image_by_class", "artefact_share_by_class")}
        return Maps(data["mean_by_class"], data["count_by_class"], groups, **optional)


def load_run_files(run_dir: Path, methods: list[str]) -> RunFiles:
    files = RunFiles(run_dir=run_dir)
    for method in methods:
        path = run_dir / "maps" / f"{method}.npz"
        try:
            files.maps[method] = _load_maps(path)
        except FileNotFoundError:
            files.maps_missing[method] = f"{path} not found (written by `audit run`)"
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            files.maps_missing[method] = f"{path} unreadable ({type(exc).__name__}); rerun `audit run`"
    csv = run_dir / "per_image.csv"
    try:
        files.per_image = pd.read_csv(csv, dtype={"path": str})
    except FileNotFoundError:
        files.per_image_missing = f"{csv} not found (written by `audit run`)"
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        files.per_image_missing = f"{csv} unreadable ({type(exc).__name__}); rerun `audit run`"
    return files


def column(table: pd.DataFrame | None, name: str) -> np.ndarray | None:
    """Finite values of a per-image column, or None when the column is absent."""
    if table is None or name not in table.columns:
        return None
    values = pd.to_numeric(table[name], errors="coerce").to_numpy(dtype=float)
    return values[np.isfinite(values)]


def class_names(results: dict[str, Any]) -> list[str]:
    return [str(name) for name in (results.get("model", {}).get("classes") or [])]
