"""Recognising a model file by its content (never by unpickling it), and the files it loads
with their digests.

A model is one file, except an ONNX model whose tensors live in external data files (the
dynamo exporter writes ``model.onnx.data`` by default). ``model_files`` lists the model file
first, then each external data file once, sorted by the location the graph names, and refuses
a location that is absolute, leaves the model's folder (``..``), is a symbolic link or is
missing. ``combined_sha256`` is the model's provenance digest:

- one file: the file's SHA-256 (what ``sha256sum model.onnx`` prints);
- several: the SHA-256 of their ``sha256sum`` listing, one line ``<hex>  <name>\\n`` per file in
  that order, names relative to the model's folder; ``cd folder && sha256sum model.onnx
  model.onnx.data | sha256sum`` gives the same digest.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from audit.errors import AuditError, first_line

EXTERNAL_FIX = "keep the data files in the model's folder and re-save with onnx.save(..., save_as_external_data=True)"

SUFFIX_FORMATS = {".pt": "torchscript", ".ts": "torchscript", ".pt2": "torch.export", ".onnx": "onnx"}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelFile:
    """One file a model loads: the path as read, its name relative to the model's folder, digest and size."""

    path: Path
    name: str
    sha256: str
    bytes: int

    def as_dict(self) -> dict[str, str | int]:
        return {"path": str(self.path), "sha256": self.sha256, "bytes": self.bytes}


def model_files(path: Path, model_format: str) -> list[ModelFile]:
    """The model file and, for ONNX, its external data files, hashed (see the module docstring)."""
    paths = [path] + (onnx_external_files(path) if model_format == "onnx" else [])
    return [ModelFile(p, os.path.relpath(p, path.parent), sha256_of(p), p.stat().st_size) for p in paths]


def combined_sha256(files: list[ModelFile]) -> str:
    """The file's own digest for one file; else SHA-256 of the ``sha256sum`` listing of all."""
    if len(files) == 1:
        return files[0].sha256
    listing = "".join(f"{f.sha256}  {Path(f.name).as_posix()}\n" for f in files)
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def onnx_external_files(path: Path) -> list[Path]:
    """The external data files an ONNX model names, each once, sorted by location; raises
    AuditError for a location that is absolute, outside the folder, a link or missing."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise AuditError(f"{path}: cannot parse the ONNX file ({first_line(exc)}); re-export the model") from exc
    tensors = list(_get_all_tensors(proto))
    for sparse in proto.graph.sparse_initializer:
        tensors += [sparse.values, sparse.indices]
    locations: dict[str, str] = {}
    for tensor in tensors:
        if uses_external_data(tensor):
            try:
                location = ExternalDataInfo(tensor).location
            except Exception as exc:
                raise AuditError(f"{path}: tensor {tensor.name!r} has malformed external data ({first_line(exc)}); {EXTERNAL_FIX}") from exc
            locations.setdefault(location, tensor.name)
    return [_external_file(path, location, tensor) for location, tensor in sorted(locations.items())]


def _external_file(path: Path, location: str, tensor: str) -> Path:
    where = f"{path}: tensor {tensor!r} reads external data {location!r}"
    if not location or PurePosixPath(location).is_absolute() or PureWindowsPath(location).is_absolute() or PureWindowsPath(location).drive:
        raise AuditError(f"{where}, an absolute path; {EXTERNAL_FIX}")
    if ".." in PurePosixPath(location.replace("\\", "/")).parts:
        raise AuditError(f"{where}, outside the model's folder; {EXTERNAL_FIX}")
    folder = path.parent.resolve()
    target = path.parent / location
    for part in [target, *target.parents]:
        if part == path.parent:
            break
        if part.is_symlink():
            raise AuditError(f"{where}, and {part} is a symbolic link; {EXTERNAL_FIX}")
    if not target.is_file():
        raise AuditError(f"{where}, which does not exist; {EXTERNAL_FIX}")
    if folder not in target.resolve().parents:
        raise AuditError(f"{where}, outside the model's folder; {EXTERNAL_FIX}")
    return target


def detect_format(path: Path) -> str:
    """'torchscript', 'torch.export' or 'onnx', from the file's content; the suffix breaks no ties.

    TorchScript and torch.export archives are zip files, whose members must pass their CRC
    check (``ZipFile.testzip``): an export archive has an
    ``archive_format`` record, a TorchScript archive a ``code/`` folder. Anything else that
    parses as an ONNX protobuf is ONNX.
    """
    if not path.exists():
        raise AuditError(f"{path}: model file not found; check the path")
    if not path.is_file():
        raise AuditError(f"{path}: is not a file; give a .pt/.ts (TorchScript), .pt2 (torch.export) or .onnx file")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
                corrupt = archive.testzip()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
            raise AuditError(f"{path}: unreadable zip archive ({first_line(exc)}); re-save the model") from exc
        if corrupt is not None:
            raise AuditError(f"{path}: member {corrupt} is corrupt (its CRC does not match); re-save the model")
        if any(name.endswith("/archive_format") or name == "archive_format" for name in names):
            return "torch.export"
        if any("/code/" in name or name.startswith("code/") for name in names):
            return "torchscript"
        if any(name.endswith("data.pkl") for name in names):
            raise AuditError(
                f"{path}: is a pickled state dict or module, not a TorchScript archive; pickles are "
                f"never loaded (they can run code). Save it with torch.jit.script(model).save(...), "
                f"torch.export.save(...) or export it to ONNX"
            )
        raise AuditError(f"{path}: zip archive that is neither TorchScript nor torch.export; re-save the model")
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:
        proto = None
    if proto is None or not proto.graph.node or not proto.graph.output:
        raise AuditError(
            f"{path}: not a model file (not TorchScript, torch.export or ONNX); "
            f"give a .pt/.ts, .pt2 or .onnx file"
        )
    return "onnx"
