"""Recognising a model file by its content (never by unpickling it) and hashing it."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

from audit.errors import AuditError

SUFFIX_FORMATS = {".pt": "torchscript", ".ts": "torchscript", ".pt2": "torch.export", ".onnx": "onnx"}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def detect_format(path: Path) -> str:
    """'torchscript', 'torch.export' or 'onnx', from the file's content; the suffix breaks no ties.

    TorchScript and torch.export archives are zip files: an export archive has an
    ``archive_format`` record, a TorchScript archive a ``code/`` folder. Anything else that
    parses as an ONNX protobuf is ONNX.
    """
    if not path.exists():
        raise AuditError(f"{path}: model file not found; check the path")
    if not path.is_file():
        raise AuditError(f"{path}: is not a file; give a .pt/.ts (TorchScript), .pt2 (torch.export) or .onnx file")
    if zipfile.is_zipfile(path):
        try:
            names = zipfile.ZipFile(path).namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise AuditError(f"{path}: unreadable zip archive ({exc}); re-save the model") from exc
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
