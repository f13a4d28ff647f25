"""Every way a user exports a zoo model (issue 14), written once per content to a shared folder.

Thirteen exports: the legacy ONNX exporter (``dynamo=False``) at opsets 13 and 17, with and
without constant folding, at a fixed batch of 1 and a dynamic batch; the dynamo ONNX exporter
(dynamic batch, its default opset); ``torch.jit.script`` and ``torch.jit.trace`` (``.pt``);
``torch.export`` with a dynamic and with a fixed batch of 1 (``torch.export.save``, ``.pt2``).
An exporter that cannot export a model raises ``ExportFailed`` with its first line.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tests.models.zoo.architectures import SIZE, make


@dataclass(frozen=True)
class Export:
    name: str
    suffix: str
    batch1: bool = False
    opset: int | None = None
    fold: bool = True


EXPORTS: dict[str, Export] = {
    e.name: e
    for e in [
        *(Export(f"onnx{opset}{'' if fold else '-nofold'}{'-b1' if batch1 else ''}", ".onnx", batch1, opset, fold)
          for opset in (13, 17) for fold in (True, False) for batch1 in (False, True)),
        Export("dynamo", ".onnx"),
        Export("script", ".pt"),
        Export("trace", ".pt"),
        Export("pt2", ".pt2"),
        Export("pt2-b1", ".pt2", batch1=True),
    ]
}
NATIVE = "pt2"  # the eager-faithful export: what must work when another exporter fails


class ExportFailed(Exception):
    """The exporter itself refused the model (not the audit)."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def write(model: nn.Module, export: Export, path: Path, size: int = SIZE) -> None:
    """Export ``model`` as ``export`` to ``path`` (the example input: seeded 3×size×size noise, batch 2 or 1)."""
    x = torch.rand((1 if export.batch1 else 2, 3, size, size), generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if export.opset is not None:
            axes = None if export.batch1 else {"x": {0: "batch"}, "logits": {0: "batch"}}
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=export.opset, do_constant_folding=export.fold,
                              input_names=["x"], output_names=["logits"], dynamic_axes=axes)
        elif export.name == "dynamo":
            program = torch.onnx.export(model, (x,), dynamo=True, verbose=False, input_names=["x"], output_names=["logits"],
                                        dynamic_shapes=({0: torch.export.Dim("batch")},))
            program.save(str(path))
        elif export.name == "script":
            torch.jit.script(model).save(str(path))
        elif export.name == "trace":
            # check_trace=False: the check re-traces and compares graphs, and nn.MultiheadAttention's
            # two traces differ (TracingCheckError); users then turn the check off, as here.
            torch.jit.trace(model, (x,), check_trace=False).save(str(path))
        else:
            shapes = None if export.batch1 else ({0: torch.export.Dim("batch")},)
            torch.export.save(torch.export.export(model, (x,), dynamic_shapes=shapes), str(path))


def content_key(architecture: str, export: Export) -> str:
    """Hash of what determines the file: the zoo's source, the export and the exporters' versions."""
    import onnx
    import onnxscript

    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    digest.update(f"{architecture}|{export}|{torch.__version__}|{onnx.__version__}|{onnxscript.__version__}".encode())
    return digest.hexdigest()[:16]


def exported(architecture: str, export_name: str, cache: Path) -> Path:
    """The file of ``architecture`` exported as ``export_name`` under ``cache``, written by the
    first process that needs it (xdist workers share ``cache``: written to a private name, then
    renamed, so a reader never sees half a file; a failed export leaves ``.failed`` with the
    exporter's message, raised again as ``ExportFailed``)."""
    export = EXPORTS[export_name]
    stem = cache / f"{architecture}-{export_name}-{content_key(architecture, export)}"
    path, failed = stem.with_suffix(export.suffix), stem.with_suffix(".failed")
    if not path.exists() and not failed.exists():
        private = stem.with_name(f"{stem.name}.{os.getpid()}{export.suffix}")
        try:
            write(make(architecture), export, private)
        except Exception as exc:  # noqa: BLE001 (what the exporter raises is the finding)
            failed.write_text(_first_line(exc))
        else:
            os.replace(private, path)
    if failed.exists():
        raise ExportFailed(failed.read_text())
    return path
