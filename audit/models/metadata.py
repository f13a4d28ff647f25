"""Preprocessing and class names stored in the model file, so that forgetting ``--mean/--std``
does not silently give plausible-looking nonsense.

Our convention (documented in the README, "Model metadata"): one JSON object

    {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "value_range": [0, 1],
     "class_names": ["benign", "malignant"]}

(every key optional) stored as

- ONNX: the ``metadata_props`` entry ``audit`` (``onnx.helper.set_model_props(model, {"audit": json})``);
- TorchScript: the extra file ``audit.json`` (``torch.jit.save(m, path, _extra_files={"audit.json": json})``);
- torch.export: the extra file ``audit.json`` (``torch.export.save(p, path, extra_files={"audit.json": json})``).

A flag on the command line wins over the file; the file wins over the defaults (mean 0, std 1,
range [0, 1], class indices). Malformed metadata is an error naming the file and the key, never
a silent fallback. It is JSON, so reading it runs nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.errors import AuditError

KEY = "audit"
EXTRA_FILE = "audit.json"
MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class Metadata:
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    value_range: tuple[float, float] | None = None
    class_names: tuple[str, ...] | None = None

    @property
    def preprocessing(self) -> bool:
        return any(v is not None for v in (self.mean, self.std, self.value_range))


def _numbers(path: Path, key: str, value: Any) -> tuple[float, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                           and math.isfinite(v) for v in value):
        raise AuditError(f"{path}: model metadata {KEY}.{key} must be a non-empty list of finite numbers, not "
                         f"{json.dumps(value)[:80]}; fix the metadata or pass --{key.replace('_', '-')}")
    return tuple(float(v) for v in value)


def parse_metadata(path: Path, text: str | bytes | None) -> Metadata:
    """The ``audit`` metadata of ``path`` (``text``: the stored JSON, None when absent)."""
    if text is None or (isinstance(text, (str, bytes)) and not text.strip()):
        return Metadata()
    if len(text) > MAX_BYTES:
        raise AuditError(f"{path}: model metadata {KEY} is larger than {MAX_BYTES} bytes; store only mean, std, "
                         f"value_range and class_names there")
    try:
        document = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AuditError(f"{path}: model metadata {KEY} is not JSON ({exc}); fix it or remove it") from None
    if not isinstance(document, dict):
        raise AuditError(f"{path}: model metadata {KEY} must be a JSON object with mean, std, value_range, class_names")
    found: dict[str, Any] = {}
    for key in ("mean", "std"):
        if key in document:
            found[key] = _numbers(path, key, document[key])
    if "std" in found and min(found["std"]) <= 0:
        raise AuditError(f"{path}: model metadata {KEY}.std must be > 0; fix the metadata or pass --std")
    if "value_range" in document:
        bounds = _numbers(path, "value_range", document["value_range"])
        if len(bounds) != 2 or bounds[0] >= bounds[1]:
            raise AuditError(f"{path}: model metadata {KEY}.value_range must be [low, high] with low < high; fix it "
                             f"or pass --value-range")
        found["value_range"] = bounds
    if "class_names" in document:
        names = document["class_names"]
        if (not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names)
                or len(set(names)) != len(names)):
            raise AuditError(f"{path}: model metadata {KEY}.class_names must be a list of distinct non-empty names; "
                             f"fix it or pass --class-names")
        found["class_names"] = tuple(names)
    return Metadata(**found)
