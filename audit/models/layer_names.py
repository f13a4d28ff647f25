"""The layers of a model by the names users give them: the module paths of their own code.

Every capability that takes a layer name (Grad-CAM's ``-o grad-cam.layer=``, actdiff's
``--layers``, the randomisation check's layers, ``audit layers``) looks names up here, so that
one name means one layer everywhere:

- a model run image by image (``ImageByImage``, a graph fixed at a batch of one) or seen through
  its logits alone (``LogitsOnly``, a class-map model) adds no ``model.`` prefix: its layers
  have the names of the model inside;
- the ONNX twin's ``Scope`` levels (``layer1``, ``layer1.0``) hold no computation of their own
  and are not listed as layers; named, a block stands for its last node to run, whose output is
  the block's (``block_output``); the holder of graph constants is not a layer;
- a name the twin does not have gets one line with the closest names (``difflib``), and the
  reason where the exporter is why: a convolution the dynamo exporter fused into its BatchNorm
  (``OnnxGraphModule.fused_into``) is named after the BatchNorm, whose output it computes; a
  BatchNorm the legacy exporter folded into a convolution has no name left, so the folded
  convolutions beside the name asked for are said (``OnnxGraphModule.folded_batchnorm``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from audit.errors import AuditError
from audit.models.onnx_graph.graph import OnnxGraphModule, Scope, _Constants

CLOSEST = 5


def inner_model(model: nn.Module) -> nn.Module:
    """The model itself, without the per-image wrapper of a graph fixed at a batch of one and
    the logits-only wrapper of a class-map model (``loader.LogitsOnly``)."""
    from audit.models.loader import ImageByImage, LogitsOnly

    while isinstance(model, (ImageByImage, LogitsOnly)):
        model = model.model
    return model


def named_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Name → module for every layer of ``model``, in registration order (see module docstring)."""
    return {name: module for name, module in inner_model(model).named_modules()
            if name and not isinstance(module, (Scope, _Constants))}


def find_layer(model: nn.Module, name: str, what: str, source: object) -> nn.Module:
    """The layer called ``name``; AuditError naming ``what`` (the option) and ``source`` (the
    model file) with the closest valid names otherwise."""
    layers = named_layers(model)
    if name in layers:
        return layers[name]
    block = block_output(model, name)
    if block is not None:
        return block
    raise AuditError(f"{what}: {source} has no layer {name!r}; {unknown_layer_hint(model, name, list(layers))}")


def block_output(model: nn.Module, name: str) -> nn.Module | None:
    """For an ONNX twin, the module whose output is block ``name``'s (a ``Scope``: ``layer1.0``,
    ``blocks.3``): the last of the block's nodes to run, which computes what the block returns
    (its residual sum or its last activation). None when ``name`` is not such a block."""
    inner = inner_model(model)
    if not isinstance(inner, OnnxGraphModule):
        return None
    inside = [step for step, _, _ in inner.plan if step.startswith(name + ".")]
    return inner.get_submodule(inside[-1]) if inside else None


def enclosing_block(model: nn.Module, name: str) -> str:
    """``name``'s block when ``name`` is not a module of the code called once (an op without a
    module, or a module's second call: ``layers.3.relu_1``) and is the block's last node to run
    (→ ``layers.3``), else ``name``:
    the twin then names Grad-CAM's default layer as a module tree of the code does (a .pt2's
    default is the innermost module returning the map: the block, or an nn.ReLU ``features.3``)."""
    inner = inner_model(model)
    block = name.rpartition(".")[0]
    if not isinstance(inner, OnnxGraphModule) or not block:
        return name
    repeated = re.fullmatch(r"(.+)_\d+", name)  # relu_1: the second call of the module relu
    called_once = name in inner.code_modules and not (repeated and repeated[1] in named_layers(inner))
    return block if not called_once and block_output(inner, block) is inner.get_submodule(name) else name


def unknown_layer_hint(model: nn.Module, name: str, valid: list[str]) -> str:
    """The end of an unknown-layer message: why (a fused convolution) or the closest names."""
    inner = inner_model(model)
    fused = inner.fused_into.get(name) if isinstance(inner, OnnxGraphModule) else None
    if fused is not None:
        return (f"the exporter fused it into the BatchNorm {fused!r}, which computes the BatchNorm's output: "
                f"name {fused!r}, or export without fusing (torch.onnx.export(..., optimize=False))")
    closest = difflib.get_close_matches(name, valid, n=CLOSEST, cutoff=0.5) or valid[:CLOSEST]
    hint = f"closest: {', '.join(closest)} (`audit layers MODEL` lists all {len(valid)})"
    parent = name.rpartition(".")[0]
    folded = sorted(conv for conv in getattr(inner, "folded_batchnorm", ()) if conv.rpartition(".")[0] == parent)
    if folded:  # a BatchNorm beside them, e.g. layer1.0.bn1, is gone: its name with it
        hint += (f"; the exporter folded BatchNorms into {', '.join(folded)}, which output the BatchNorms' values: "
                 f"name one of them, or export with torch.onnx.export(..., do_constant_folding=False) to keep them")
    return hint


def run_with_hooks(model: nn.Module, x: torch.Tensor, modules: dict[str, nn.Module],
                   record: Callable[[str, Any], None], *, grad: bool = False) -> Any:
    """``model(x)`` (without gradients unless ``grad``), calling ``record(name, output)`` each
    time one of ``modules`` returns; the hooks are removed afterwards, whatever happens."""
    handles = [module.register_forward_hook(lambda _, __, output, name=name: record(name, output))
               for name, module in modules.items()]
    try:
        with torch.set_grad_enabled(grad):
            return model(x)
    finally:
        for handle in handles:
            handle.remove()


@dataclass(frozen=True)
class LayerRow:
    """One line of ``audit layers``: a layer's name, module type, output shape on one image
    (its last call's; None when the forward pass does not call it), own parameter count, and a
    note (an exporter's BatchNorm folding)."""

    name: str
    kind: str
    shape: tuple[int, ...] | None
    parameters: int
    note: str = ""


def layer_rows(model: nn.Module, probe: torch.Tensor, notes: dict[str, str] | None = None) -> list[LayerRow]:
    """Every layer of ``model`` (``named_layers``) with its output shape on ``probe``, found by
    one forward pass with a forward hook on each layer."""
    layers = named_layers(model)
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str, output: Any) -> None:
        first = output[0] if isinstance(output, (tuple, list)) and output else output
        shapes[name] = tuple(first.shape) if isinstance(first, torch.Tensor) else ()

    run_with_hooks(model, probe, layers, record)
    notes = notes or {}
    return [LayerRow(name, type(module).__name__, shapes.get(name),
                     sum(p.numel() for p in module.parameters(recurse=False)), notes.get(name, ""))
            for name, module in layers.items()]


def exporter_notes(model: nn.Module) -> dict[str, str]:
    """Layer name → what an exporter merged into it (ONNX twins only)."""
    inner = inner_model(model)
    if not isinstance(inner, OnnxGraphModule):
        return {}
    notes = {name: "BatchNorm folded in: outputs the BatchNorm's output" for name in inner.folded_batchnorm}
    notes.update({fused: f"{conv} (Conv) fused in" for conv, fused in inner.fused_into.items()})
    return notes
