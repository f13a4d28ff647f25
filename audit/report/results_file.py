"""results.json: written atomically, so an earlier complete file is never replaced by a torn one."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = "audit.results/1"


def header(schema: str, command: str, run: dict[str, Any]) -> dict[str, Any]:
    """The keys every results.json starts with (``audit run``, ``finetune``, ``wildcat``): its
    schema, the tool and its version, when, the command line and where it ran (``audit.device.describe``)."""
    import datetime as dt

    import audit

    return {"schema": schema, "tool": {"name": "audit", "version": audit.__version__},
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "command": command, "run": dict(run)}


def _clean(value: Any) -> Any:
    """JSON-ready: numpy scalars to Python, NaN/inf to null."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    return value


def dumps(results: dict[str, Any]) -> str:
    return json.dumps(_clean(results), indent=2, allow_nan=False)


def write_results(results: dict[str, Any], path: Path) -> Path:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(dumps(results) + "\n")
    os.replace(temporary, path)
    return path


def read_results(path: Path) -> dict[str, Any]:
    from audit.errors import AuditError
    from audit.report.output_folder import verify_outputs

    if path.is_dir():
        path = path / "results.json"
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError as exc:
        raise AuditError(f"{path}: not found; give a results.json written by `audit run` or its folder") from exc
    except IsADirectoryError as exc:
        raise AuditError(f"{path}: is a folder; give a results.json written by `audit run` or its folder") from exc
    except UnicodeDecodeError as exc:
        raise AuditError(f"{path}: not a results file (byte 0x{exc.object[exc.start]:02x} at offset {exc.start} is not "
                         f"UTF-8, which `audit run` writes); rerun `audit run`") from exc
    except json.JSONDecodeError as exc:
        raise AuditError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); rerun `audit run`") from exc
    except RecursionError as exc:
        raise AuditError(f"{path}: not a results file (nested too deeply to parse); rerun `audit run`") from exc
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise AuditError(f"{path}: not an audit results file (schema {data.get('schema') if isinstance(data, dict) else None!r}); rerun `audit run`")
    verify_outputs(path.parent, data, path)
    return data
