"""Write a fine-tuned differentiable model back in the format its original came in.

- ONNX: ``audit.models.onnx_graph.write_back`` copies the twin's parameters into the original
  graph (same operators, names and opset).
- TorchScript: ``torch.jit.trace`` of the ONNX twin that fine-tuning trains (``Classifier.layered``:
  actdiff hooks layers, which a loaded ScriptModule refuses; the interpreter's plan becomes a
  static graph).
- torch.export: ``torch.export.export`` of the program's own module tree that fine-tuning trains
  (``audit.models.native``; inserted BatchNorm folded back) with a dynamic batch dimension (fixed
  at one if the program was), then ``torch.export.save``.

``check_writable`` does all of this once on the untrained model, before any training, and
reloads the file with ``load_classifier``: a model that cannot be written back fails early.
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from audit.errors import AuditError, first_line
from audit.models.classifier import Classifier
from audit.models.layer_names import inner_model
from audit.models.loader import ModelOptions, load_classifier

SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "torch.export": ".pt2"}
TOLERANCE = 1e-4


class _OneInput(nn.Module):
    """``forward(x)`` around the model's ``forward(*inputs)``, so exporters see one named input
    (the attribute is not called ``graph``: an unlifted torch.export module has its own)."""

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        self.net = graph

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _example(classifier: Classifier, batch: int) -> torch.Tensor:
    return torch.rand((batch, *classifier.spec.shape), generator=torch.Generator().manual_seed(0))


def write_model(classifier: Classifier, model: nn.Module, path: Path) -> Path:
    """Save ``model`` (the fine-tuned ``classifier.layered``) to ``path`` in ``classifier.format``."""
    graph = inner_model(model).eval()  # a model traced for a batch of one is wrapped per image
    if any(p.device.type != "cpu" for p in graph.parameters()):  # written from the CPU, loadable anywhere
        graph = copy.deepcopy(graph).cpu()
    fixed = classifier.batch_limit == 1
    if classifier.format == "onnx":
        from audit.models.onnx_graph import write_back

        onnx.save(write_back(graph, onnx.load(str(classifier.path))), str(path))
    elif classifier.format == "torchscript":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks on a non-empty batch
            traced = torch.jit.trace(_OneInput(graph), (_example(classifier, 1 if fixed else 2),), check_trace=False)
        traced.save(str(path))
    elif classifier.format == "torch.export":
        example = (_example(classifier, 1 if fixed else 2),)
        dynamic = None if fixed else {"x": {0: torch.export.Dim("batch", min=1, max=4096)}}
        torch.export.save(torch.export.export(_OneInput(graph), example, dynamic_shapes=dynamic), str(path))
    else:
        raise AuditError(f"{classifier.path}: format {classifier.format!r} cannot be written back; "
                         f"use one of {', '.join(SUFFIXES)}")
    return path


def check_writable(classifier: Classifier, options: ModelOptions) -> None:
    """Write the untrained model in its own format, reload it and compare logits within 1e-4;
    AuditError (before any training) if any of this fails."""
    if classifier.format not in SUFFIXES:
        raise AuditError(f"{classifier.path}: format {classifier.format!r} cannot be written back; "
                         f"use one of {', '.join(SUFFIXES)}")
    model = classifier.layered
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"check{SUFFIXES[classifier.format]}"
        try:
            write_model(classifier, model, path)
            reloaded = load_classifier(path, options)
            x = _example(classifier, 3).to(classifier.device)
            with torch.no_grad():
                error = float((reloaded.logits(x) - model(x)).abs().max())
        except Exception as exc:
            raise AuditError(f"{classifier.path}: a fine-tuned model could not be written back as "
                             f"{classifier.format} ({first_line(exc)}); nothing was trained — convert the model to ONNX first") from exc
    if not error <= TOLERANCE:
        raise AuditError(f"{classifier.path}: written back as {classifier.format}, the model differs by "
                         f"{error:.2e} (> {TOLERANCE}); nothing was trained — convert the model to ONNX first")
