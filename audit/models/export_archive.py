"""A torch.export (``.pt2``) archive checked, before ``torch.export.load``, so loading it runs no
code from the file.

What ``torch.export.load`` (torch 2.13, ``torch/export/pt2_archive/_package.py`` and
``torch/_export/serde/serialize.py``) would execute, and what we do about each:

- ``data/sample_inputs/<model>.pt``: ``torch.load(weights_only=True)``, and on failure again
  with ``weights_only=False`` (a full unpickler);
- ``data/weights/*`` and ``data/constants/tensor_*`` whose payload config says ``use_pickle``,
  and the legacy ``data/weights/<model>.pt`` / ``data/constants/<model>.pt``:
  ``torch.load(weights_only=False)``;
- ``data/constants/custom_obj_*`` (TorchScript unpickler) and ``opaque_obj_*`` (``pickle.loads``);
- the pre-2.8 layout (``serialized_*.pt``), read when the new layout fails to load;
- every member under ``models/``, whatever its suffix, as a program (so only ``models/<name>.json``
  and the records torch.export.save writes are accepted: ``EXPECTED_MEMBER``);
- ``data/aotinductor/``: compiled shared libraries, loaded as native code;
- text in ``models/<model>.json`` that is ``eval``-ed (see ``export_json``).

Every member that would be unpickled must load with torch's restricted unpickler
(``torch.load(weights_only=True)``: tensors, containers and numbers only); custom and opaque
objects, AOTInductor code, the legacy layout and unsafe JSON text are refused outright, with one
line that names the archive and the member. The archive is read once into memory and both this
check and ``torch.export.load`` read those same bytes, through torch's own archive reader, so
what is checked is what is loaded.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import zipfile
from pathlib import Path

import torch

from audit.errors import AuditError, first_line
from audit.models.export_json import unsafe_program_text

FIX = "re-save it with torch.export.save from a plain tensor-only module"
#: Every record name torch.export.save writes (torch 2.13). torch.export.load reads EVERY member
#: under models/ as a program, whatever its suffix, so a ``models/`` member must be ``<name>.json``.
EXPECTED_MEMBER = re.compile(
    r"archive_format|archive_version|byteorder|version|\.data/[\w.-]+|models/[\w.-]+\.json|"
    r"data/(sample_inputs/[\w.-]+\.pt|weights/[\w.-]+|constants/[\w.-]+|aotinductor/.+)|extra/.+"
)
LEGACY_MEMBERS = ("serialized_exported_program.json", "serialized_state_dict.pt", "serialized_constants.pt",
                  "serialized_example_inputs.pt")


def load_export_archive(path: Path, extra_files: dict[str, str] | None = None) -> torch.export.ExportedProgram:
    """``torch.export.load`` of ``path`` after ``check_export_archive``; any failure is an
    AuditError. ``extra_files``: names to read from the archive's extra files (their text is
    filled in; torch.export.load's own argument)."""
    data = path.read_bytes()
    check_export_archive(path, data)
    try:
        return torch.export.load(io.BytesIO(data), extra_files=extra_files)
    except Exception as exc:
        raise AuditError(f"{path}: cannot load torch.export program ({first_line(exc)}); {FIX}") from exc


def check_export_archive(path: Path, data: bytes) -> None:
    """Raise AuditError unless loading the archive ``data`` (read from ``path``) can run no code."""
    try:
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise AuditError(f"{path}: unreadable torch.export archive ({first_line(exc)}); {FIX}") from exc
    legacy = [n for n in names if n in LEGACY_MEMBERS]
    if legacy:
        raise AuditError(f"{path}: holds {legacy[0]}, the pre-2.8 torch.export layout, which is unpickled without "
                         f"restriction; {FIX}")
    try:
        reader = torch._C.PyTorchFileReader(io.BytesIO(data))
        records = list(reader.get_all_records())
    except Exception as exc:
        raise AuditError(f"{path}: unreadable torch.export archive ({first_line(exc)}); {FIX}") from exc
    for name in records:
        if not EXPECTED_MEMBER.fullmatch(name):
            raise AuditError(f"{path}: member {name} is not part of a torch.export archive (torch.export.save writes "
                             f"models/<name>.json, data/… and a few records); {FIX}")
        if name.startswith("data/aotinductor/"):
            raise AuditError(f"{path}: member {name} is AOTInductor compiled code, which is never loaded; {FIX}")
        if name.startswith(("data/constants/custom_obj_", "data/constants/opaque_obj_")):
            raise AuditError(f"{path}: member {name} is a pickled Python object, which is never loaded; {FIX}")
    for model in [n[len("models/"):-len(".json")] for n in records if n.startswith("models/") and n.endswith(".json")]:
        program = _json(path, reader, f"models/{model}.json")
        unsafe = unsafe_program_text(program)
        if unsafe:
            raise AuditError(f"{path}: models/{model}.json holds text torch would evaluate as Python ({unsafe}); {FIX}")
        for member in _pickled_members(path, reader, set(records), model):
            _check_pickle(path, member, _read(path, reader, member))


def _pickled_members(path: Path, reader, records: set[str], model: str) -> list[str]:
    """The members torch.export.load unpickles for ``model`` (see the module docstring)."""
    members = [f"data/sample_inputs/{model}.pt"]
    for folder, kind in (("data/weights/", "weights"), ("data/constants/", "constants")):
        legacy = f"{folder}{model}.pt"
        if legacy in records:
            members.append(legacy)
            continue
        config_name = f"{folder}{model}_{kind}_config.json"
        if config_name not in records:
            continue
        config = _json(path, reader, config_name)
        entries = config.get("config") if isinstance(config, dict) else None
        if not isinstance(entries, dict):
            raise AuditError(f"{path}: {config_name} is not a payload config; {FIX}")
        for fqn, entry in entries.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("path_name"), str):
                raise AuditError(f"{path}: {config_name} entry {fqn!r} has no path_name; {FIX}")
            name = entry["path_name"]
            if name.startswith(("custom_obj_", "opaque_obj_")):
                raise AuditError(f"{path}: constant {fqn!r} is a pickled Python object, which is never loaded; {FIX}")
            if entry.get("use_pickle"):
                members.append(os.path.join(folder, name))
    return [m for m in members if m in records]


def _read(path: Path, reader, name: str) -> bytes:
    try:
        return reader.get_record(name)
    except Exception as exc:
        raise AuditError(f"{path}: member {name} is unreadable ({first_line(exc)}); {FIX}") from exc


def _json(path: Path, reader, name: str):
    try:
        return json.loads(_read(path, reader, name).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise AuditError(f"{path}: member {name} is not valid JSON ({first_line(exc)}); {FIX}") from exc


def _check_pickle(path: Path, name: str, payload: bytes) -> None:
    """Load ``payload`` with torch's restricted unpickler, which refuses every global outside
    its tensor allowlist before calling it; refuse the archive if that fails."""
    if not payload:
        return
    try:
        torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f"references {found.group(1)}" if found else "holds more than tensors"
        raise AuditError(f"{path}: member {name} is a pickle that {what}; pickled code is never run; {FIX}") from exc
    except Exception as exc:
        raise AuditError(f"{path}: member {name} is unreadable ({first_line(exc)}); {FIX}") from exc
