"""Finding a dataset's images and labels: a folder of class sub-folders, or a CSV manifest.

Both return ``(classes, entries)``, entries being ``(path relative to the base folder, label)``
with label -1 where it is unknown.

Folder: classes are the sorted names of the sub-folders; every file with a supported extension
below a class folder gets that class's index; image files directly in the folder are
unlabelled. Hidden files and folders (name starting with ".") are ignored. Manifest: a CSV with a ``path`` column (relative to the CSV's folder) and
an optional ``label`` column. Labels that are all integers are class indices (classes "0" …
"max"); otherwise labels are class names (classes sorted). An empty label cell is unknown.
"""

from __future__ import annotations

import csv
from pathlib import Path, PurePath

from audit.errors import AuditError

Entry = tuple[str, int]


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def _is_image(path: Path, root: Path, extensions: set[str]) -> bool:
    return path.is_file() and path.suffix.lower() in extensions and _visible(path, root)


def scan_folder(root: Path, extensions: set[str]) -> tuple[list[str], list[Entry]]:
    """Classes and entries of an image folder with one sub-folder per class."""
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and _visible(p, root))
    classes = [p.name for p in class_dirs]
    entries: list[Entry] = [(p.name, -1) for p in sorted(root.iterdir()) if _is_image(p, root, extensions)]
    for label, folder in enumerate(class_dirs):
        entries += [
            (p.relative_to(root).as_posix(), label)
            for p in sorted(folder.rglob("*"))
            if _is_image(p, root, extensions)
        ]
    return classes, entries


def _labels(raw: list[str]) -> tuple[list[str], list[int]]:
    given = [value for value in raw if value]
    try:
        indices = [int(value) for value in given]
    except ValueError:
        classes = sorted(set(given))
        return classes, [classes.index(value) if value else -1 for value in raw]
    if any(i < -1 for i in indices):
        raise AuditError(
            f"label {min(indices)} is negative; labels are class indices from 0 "
            f"(or -1 / an empty cell for unknown) or class names"
        )
    return [str(i) for i in range(max(indices, default=-1) + 1)], [
        int(value) if value else -1 for value in raw
    ]


def read_manifest(csv_path: Path) -> tuple[list[str], list[Entry]]:
    """Classes and entries of a CSV manifest with columns ``path`` and optional ``label``."""
    with csv_path.open(newline="", encoding="utf-8-sig") as f:
        rows = csv.DictReader(f)
        columns = [c.strip() for c in rows.fieldnames or []]
        if "path" not in columns:
            raise AuditError(
                f"{csv_path}: no 'path' column (found: {', '.join(columns) or 'nothing'}); "
                f"the first line must be the header path,label (label optional)"
            )
        rows.fieldnames = columns
        records = [((row["path"] or "").strip(), (row.get("label") or "").strip()) for row in rows]
    for line, (path, _) in enumerate(records, start=2):
        if not path or PurePath(path).is_absolute():
            raise AuditError(
                f"{csv_path}, line {line}: path {path!r} must be a file path relative to the "
                f"CSV's folder"
            )
    try:
        classes, labels = _labels([label for _, label in records])
    except AuditError as exc:
        raise AuditError(f"{csv_path}: {exc}") from None
    return classes, [(PurePath(p).as_posix(), y) for (p, _), y in zip(records, labels)]
