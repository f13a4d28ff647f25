"""Finding a dataset's images and labels: a folder of class sub-folders, or a CSV manifest.

Both return ``(classes, entries)``, entries being ``(path relative to the base folder, label)``
with label -1 where it is unknown.

Folder: classes are the sorted names of the sub-folders; every file with a supported extension
below a class folder gets that class's index; image files directly in the folder are
unlabelled. Hidden files and folders (name starting with ".") are ignored. Class names leave
as ``names.escape_path`` writes them (a folder name that is not UTF-8 stays writable).

Manifest: a UTF-8 CSV with a ``path`` column (relative to the CSV's folder) and an optional
``label`` column. Labels are either all class indices (ASCII digits, classes "0" … "max", the
largest index below ``MAX_CLASSES``) or all class names (classes sorted); a manifest mixing the
two is refused, naming a row of each. An empty cell or -1 is unknown, in both kinds.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from pathlib import Path, PurePath

from audit.data.names import escape_path
from audit.errors import AuditError

Entry = tuple[str, int]

#: Integer labels are class indices below this (2^16): a label of 10^12 would otherwise build
#: 10^12 class names. No classifier we know of has as many outputs.
MAX_CLASSES = 65_536
_INDEX = re.compile(r"-?[0-9]+")


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def _is_image(path: Path, root: Path, extensions: set[str]) -> bool:
    return path.is_file() and path.suffix.lower() in extensions and _visible(path, root)


def scan_folder(root: Path, extensions: set[str]) -> tuple[list[str], list[Entry]]:
    """Classes and entries of an image folder with one sub-folder per class."""
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and _visible(p, root))
    classes = [escape_path(p.name) for p in class_dirs]
    entries: list[Entry] = [(p.name, -1) for p in sorted(root.iterdir()) if _is_image(p, root, extensions)]
    for label, folder in enumerate(class_dirs):
        entries += [
            (p.relative_to(root).as_posix(), label)
            for p in sorted(folder.rglob("*"))
            if _is_image(p, root, extensions)
        ]
    return classes, entries


def _labels(raw: list[str], lines: list[int], csv_path: Path) -> tuple[list[str], list[int]]:
    """Classes and label indices of the manifest's label cells (``lines``: each row's CSV line)."""
    known = [(line, value) for line, value in zip(lines, raw) if value not in ("", "-1")]
    indices = [(line, value) for line, value in known if _INDEX.fullmatch(value)]
    names = [(line, value) for line, value in known if not _INDEX.fullmatch(value)]
    if indices and names:
        (i_line, i_value), (n_line, n_value) = indices[0], names[0]
        raise AuditError(
            f"{csv_path}: labels mix class indices and names (line {i_line}: {i_value!r}, line "
            f"{n_line}: {n_value!r}); use one kind in the whole label column"
        )
    if names:
        classes = sorted({value for _, value in names})
        position = {name: i for i, name in enumerate(classes)}
        return classes, [position.get(value, -1) for value in raw]
    for line, value in indices:
        if not 0 <= int(value) < MAX_CLASSES:
            raise AuditError(
                f"{csv_path}, line {line}: label {value} is not a class index from 0 to "
                f"{MAX_CLASSES - 1} (or -1 / an empty cell for unknown); use class indices or names"
            )
    top = max((int(value) for _, value in indices), default=-1)
    return [str(i) for i in range(top + 1)], [int(value) if value else -1 for value in raw]


def _decoded(csv_path: Path) -> str:
    data = csv_path.read_bytes().removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise AuditError(
            f"{csv_path}, line {line}: byte 0x{data[exc.start]:02x} is not UTF-8; save the manifest as UTF-8"
        ) from None


def read_manifest(csv_path: Path) -> tuple[list[str], list[Entry]]:
    """Classes and entries of a CSV manifest with columns ``path`` and optional ``label``."""
    rows = csv.DictReader(io.StringIO(_decoded(csv_path), newline=""))
    try:
        columns = [c.strip() for c in rows.fieldnames or []]
        if "path" not in columns:
            raise AuditError(
                f"{csv_path}: no 'path' column (found: {', '.join(columns) or 'nothing'}); "
                f"the first line must be the header path,label (label optional)"
            )
        rows.fieldnames = columns
        records = [((row["path"] or "").strip(), (row.get("label") or "").strip(), rows.line_num) for row in rows]
    except csv.Error as exc:
        raise AuditError(f"{csv_path}, line {rows.reader.line_num}: {exc}; fix the CSV") from None
    for path, _, line in records:
        if not path or PurePath(path).is_absolute():
            raise AuditError(
                f"{csv_path}, line {line}: path {path!r} must be a file path relative to the "
                f"CSV's folder"
            )
    classes, labels = _labels([label for _, label, _ in records], [line for _, _, line in records], csv_path)
    return classes, [(PurePath(p).as_posix(), y) for (p, _, _), y in zip(records, labels)]
