"""Region masks from bounding boxes: ``--regions boxes.csv``, the way RSNA Pneumonia and most
detection sets ship their boxes.

The CSV has the columns ``path, x, y, width, height`` (a ``label`` column and any other column
are read past: the region of an image is the union of all its boxes, whatever their label).
``path`` names an image of the dataset relative to the ``--data`` root, as the dataset lists it
(``cat/a.png``; a CSV manifest's ``path`` column) or as per_image.csv writes it (the same, with
a non-UTF-8 byte escaped as ``\\xNN``, ``audit.data.names``); ``./cat/a.png`` and ``cat//a.png``
are the same path. Several rows per image are a union; repeated rows are harmless. Cells past
the header's columns are ignored; missing ones are empty.

Coordinates are pixels of the image file as read, before any resize to the model's input:
``x, y`` the top-left corner, x to the right, y down. A box covers every pixel it overlaps,
pixel i spanning [i, i + 1): columns ⌊x⌋ … ⌈x + width⌉ − 1, rows ⌊y⌋ … ⌈y + height⌉ − 1 (our
rule; for integers, columns x … x + width − 1, so a 1×1 box at (3, 4) is the one pixel there).
The mask is drawn at the image's size and then goes through the same steps as a region mask
file (nearest-neighbour resize to the model's input, ``--mask-dilate``, ``--mask-blur``).

A box that crosses the image border is clipped to it and counted (``clipped``); one wholly
outside draws nothing and is counted in ``outside`` too. The image's size is only known when
it is read, so both are counts over the images a run reads.

A row whose four numbers are all empty lists the image without a box: it has a region mask,
empty (an annotated negative, as RSNA's label file writes them), while an image the CSV does not
name has no region mask at all. Refused with one line naming the CSV line and the fix (exit 2):
a missing column, a number that is not a finite number, a width or height ≤ 0 (zero too: a
zero-size box covers nothing; leave the four cells empty to list an image without boxes), some
but not all of the four numbers empty, an empty path. A path the dataset does not list is
counted (``unmatched``, with the first one) and skipped, so one CSV can serve several splits;
a CSV none of whose rows names an image of the dataset is refused.

Memory: the CSV is read in chunks of ``CHUNK_ROWS`` rows, only its five columns, and only the
boxes of listed images are kept (as float64, repeated boxes once); a box's size never
allocates anything (it is clipped before it is drawn).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from audit.data.entries import Entry
from audit.data.names import escape_path
from audit.errors import AuditError

COLUMNS = ("path", "x", "y", "width", "height")
NUMBERS = COLUMNS[1:]
CHUNK_ROWS = 100_000


@dataclass(frozen=True)
class RegionBoxes:
    """The boxes of a CSV by image (relative path as the dataset lists it → (n, 4) float64 rows
    x, y, width, height; (0, 4) for an image listed without boxes), and what reading it found."""

    file: str
    rows: int
    unmatched: int
    first_unmatched: str | None
    boxes: dict[str, np.ndarray] = field(repr=False)

    def describe(self) -> dict[str, object]:
        """The static part of results.json's ``data.region_boxes``."""
        return {"file": self.file, "rows": self.rows, "images": len(self.boxes), "unmatched": self.unmatched,
                "first_unmatched": self.first_unmatched}


@dataclass(frozen=True)
class Drawn:
    """A mask drawn from boxes, with how many of them crossed the border (``clipped``) and how
    many of those lay wholly outside (``outside``)."""

    mask: np.ndarray
    clipped: int
    outside: int


def draw_boxes(boxes: np.ndarray, shape: tuple[int, int]) -> Drawn:
    """The (H, W) bool union of ``boxes`` ((n, 4) x, y, width, height with width, height > 0),
    each covering the pixels it overlaps (module docstring), clipped to the image.

    >>> draw_boxes(np.array([[1.0, 0.0, 2.0, 1.0]]), (2, 4)).mask.astype(int).tolist()
    [[0, 1, 1, 0], [0, 0, 0, 0]]
    """
    height, width = shape
    mask = np.zeros(shape, dtype=bool)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    with np.errstate(over="ignore"):  # x + width beyond float64 is +inf, clipped like any large edge
        left, top = np.floor(boxes[:, 0]), np.floor(boxes[:, 1])
        right, bottom = np.ceil(boxes[:, 0] + boxes[:, 2]), np.ceil(boxes[:, 1] + boxes[:, 3])
    crosses = (left < 0) | (top < 0) | (right > width) | (bottom > height)
    columns = np.clip(np.stack([left, right], axis=1), 0, width).astype(np.int64)
    rows = np.clip(np.stack([top, bottom], axis=1), 0, height).astype(np.int64)
    empty = (columns[:, 0] >= columns[:, 1]) | (rows[:, 0] >= rows[:, 1])
    for (x0, x1), (y0, y1) in zip(columns[~empty], rows[~empty]):
        mask[y0:y1, x0:x1] = True
    return Drawn(mask, int(crosses.sum()), int((crosses & empty).sum()))


def _lookup(entries: list[Entry]) -> dict[str, str]:
    """Every accepted spelling of a listed path → the path as listed."""
    known: dict[str, str] = {}
    for rel, _ in entries:
        known.setdefault(escape_path(rel), rel)
        known[rel] = rel
    return known


def _chunks(csv_path: Path):
    """The CSV's five columns as text, in chunks of ``CHUNK_ROWS`` rows (index: data row from 0)."""
    try:
        header = pd.read_csv(csv_path, nrows=0, encoding="utf-8-sig")
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise AuditError(f"{csv_path}: not a readable CSV ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                         f"give a UTF-8 CSV with the header {','.join(COLUMNS)}") from None
    found = [str(c).strip() for c in header.columns]
    missing = [c for c in COLUMNS if c not in found]
    if missing:
        raise AuditError(f"{csv_path}: no column {', '.join(missing)} (found: {', '.join(found) or 'nothing'}); the "
                         f"first line must be the header {','.join(COLUMNS)}[,label]")
    return pd.read_csv(csv_path, usecols=lambda c: str(c).strip() in COLUMNS, dtype=str, keep_default_na=False,
                       skip_blank_lines=False, encoding="utf-8-sig", chunksize=CHUNK_ROWS, index_col=False)


def _numbers(chunk: pd.DataFrame, csv_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(n, 4) float64 boxes of the chunk's rows and (n,) bool: rows listing an image without a box."""
    cells = chunk[list(NUMBERS)].apply(lambda column: column.str.strip())
    blank = (cells == "").to_numpy()
    values = cells.apply(lambda column: pd.to_numeric(column, errors="coerce")).to_numpy(dtype=np.float64, copy=True)
    no_box = blank.all(axis=1)
    bad = (blank | ~np.isfinite(values)) & ~no_box[:, None]
    if bad.any():
        row, column = np.argwhere(bad)[0]
        name, text = NUMBERS[column], cells.iat[row, column]
        why = "is empty" if blank[row, column] else f"{text!r} is not a finite number"
        raise AuditError(f"{csv_path}, line {chunk.index[row] + 2}: {name} {why}; give numbers for all of "
                         f"{', '.join(NUMBERS)} (pixels of the image file), or leave all four empty for an image "
                         f"without boxes")
    small = (values[:, 2:] <= 0) & ~no_box[:, None]
    if small.any():
        row, column = np.argwhere(small)[0]
        raise AuditError(f"{csv_path}, line {chunk.index[row] + 2}: {NUMBERS[column + 2]} {cells.iat[row, column + 2]} "
                         f"must be > 0 (a box covers at least part of a pixel); leave x, y, width, height empty for "
                         f"an image without boxes")
    return values, no_box


def read_boxes(csv_path: Path, entries: list[Entry]) -> RegionBoxes:
    """The boxes of ``csv_path`` for the dataset's ``entries`` (module docstring); AuditError
    for a bad CSV, naming the line and the fix."""
    known, names = _lookup(entries), [rel for rel, _ in entries]
    index_of = {rel: i for i, rel in enumerate(names)}
    kept: list[np.ndarray] = []  # (m, 5) rows: image index, x, y, width, height (NaN: no box)
    rows = unmatched = 0
    first_unmatched = None
    try:
        for chunk in _chunks(csv_path):
            chunk = chunk.rename(columns=lambda c: str(c).strip()).fillna("")  # a short row's missing cells
            paths = chunk["path"].str.strip()
            filled = (chunk[list(COLUMNS)].apply(lambda column: column.str.strip()) != "").any(axis=1).to_numpy()
            chunk, paths = chunk[filled], paths[filled]  # a blank line is not a row
            if not len(chunk):
                continue
            if (paths == "").any():
                line = chunk.index[(paths == "").to_numpy()][0] + 2
                raise AuditError(f"{csv_path}, line {line}: the path is empty; name the image relative to the --data root")
            values, no_box = _numbers(chunk, csv_path)
            matched = [known.get(p) or known.get(PurePosixPath(p).as_posix()) for p in paths]
            hit = np.array([m is not None for m in matched], dtype=bool)
            rows += len(chunk)
            unmatched += int((~hit).sum())
            if first_unmatched is None and not hit.all():
                first_unmatched = f"line {chunk.index[~hit][0] + 2}: {escape_path(paths[~hit].iloc[0])}"
            if hit.any():
                image = np.array([index_of[m] for m in matched if m is not None], dtype=np.float64)
                values[no_box] = math.nan
                kept.append(np.unique(np.column_stack([image, values[hit]]), axis=0))
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise AuditError(f"{csv_path}: not a readable CSV ({str(exc).splitlines()[0]}); fix the CSV "
                         f"(UTF-8, the header {','.join(COLUMNS)}[,label], one box per line)") from None
    if not rows:
        raise AuditError(f"{csv_path}: no boxes (only the header); give one row per box: {','.join(COLUMNS)}")
    if not kept:
        raise AuditError(f"{csv_path}: none of its {rows} rows names an image of the dataset (first: {first_unmatched}); "
                         f"paths are relative to the --data root, as per_image.csv writes them")
    table = np.unique(np.concatenate(kept), axis=0)  # sorted by image index; NaN rows (no box) last per image
    starts = np.flatnonzero(np.r_[True, table[1:, 0] != table[:-1, 0]])
    boxes = {}
    for own in np.split(table, starts[1:]):
        boxes[names[int(own[0, 0])]] = own[~np.isnan(own[:, 1:]).any(axis=1), 1:]
    return RegionBoxes(escape_path(csv_path), rows, unmatched, first_unmatched, boxes)
