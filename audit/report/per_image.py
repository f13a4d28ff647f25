"""per_image.csv, streamed: rows are appended and flushed per batch, so a run that fails part-way
leaves every row it computed in ``per_image.partial.csv``; ``write_per_image`` joins the partial
files of a run (one, or one per shard, in order) with the metric columns of its state."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from audit.errors import AuditError

BASE_COLUMNS = ("path", "label", "prediction", "target", "probability", "correct", "artefact_pixels", "region_pixels")
PARTIAL = "per_image.partial.csv"


class PerImageWriter:
    """Append rows of the base columns to ``out_dir/per_image.partial.csv`` as batches stream through."""

    def __init__(self, out_dir: Path) -> None:
        self.partial = out_dir / PARTIAL
        self._handle = self.partial.open("w", newline="")
        self._writer = csv.writer(self._handle)
        self._writer.writerow(BASE_COLUMNS)

    def append(self, rows: Iterable[tuple[Any, ...]]) -> None:
        self._writer.writerows(rows)
        self._handle.flush()

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()


def write_per_image(partials: list[Path], paths: list[str], columns: dict[str, list[float]], final: Path) -> Path:
    """``final``: the base rows of ``partials`` in order, as written (text, not re-parsed), with
    the metric ``columns`` (aligned with ``paths``, NaN written empty). A partial file inside
    ``final``'s folder is removed once ``final`` is in place."""
    tables = []
    for partial in partials:
        try:
            tables.append(pd.read_csv(partial, keep_default_na=False, dtype=str))
        except (OSError, ValueError) as exc:
            raise AuditError(f"{partial}: cannot read the per-image rows ({exc}); rerun that part") from exc
    table = pd.concat(tables, ignore_index=True)
    if table["path"].tolist() != list(paths):
        raise AuditError(f"{', '.join(map(str, partials))}: the per-image rows do not match the run state's images; "
                         f"rerun that part")
    extra = pd.DataFrame(
        {name: [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]
         for name, values in columns.items()},
        index=table.index,
    )
    staging = final.with_name(final.name + ".tmp")
    pd.concat([table, extra], axis=1).to_csv(staging, index=False)
    staging.replace(final)
    for partial in partials:
        if partial.parent.resolve() == final.parent.resolve() and partial.name == PARTIAL:
            partial.unlink()
    return final
