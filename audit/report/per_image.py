"""per_image.csv, streamed: rows are appended and flushed per batch, so a run that fails part-way
leaves every row it computed in ``per_image.partial.csv``; a finished run renames it."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

BASE_COLUMNS = ("path", "label", "prediction", "target", "probability", "correct", "artefact_pixels", "region_pixels")


class PerImageWriter:
    """Append rows of the base columns as batches stream through."""

    def __init__(self, out_dir: Path) -> None:
        self.partial = out_dir / "per_image.partial.csv"
        self.final = out_dir / "per_image.csv"
        self._handle = self.partial.open("w", newline="")
        self._writer = csv.writer(self._handle)
        self._writer.writerow(BASE_COLUMNS)

    def append(self, rows: Iterable[tuple[Any, ...]]) -> None:
        self._writer.writerows(rows)
        self._handle.flush()

    def finish(self, extra_columns: dict[str, list[float]]) -> Path:
        """Add per-image metric columns (aligned with the rows written) and move into place."""
        self._handle.close()
        if extra_columns:
            table = pd.read_csv(self.partial, keep_default_na=False, dtype={"path": str})
            extra = pd.DataFrame(
                {name: [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]
                 for name, values in extra_columns.items()},
                index=table.index,
            )
            pd.concat([table, extra], axis=1).to_csv(self.partial, index=False)
        self.partial.replace(self.final)
        return self.final

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()
