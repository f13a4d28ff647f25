"""The layers of a model by the names users give them: the module paths of their own code.

Every capability that takes a layer name (Grad-CAM's ``-o grad-cam.layer=``, actdiff's
``--layers``, the randomisation check's layers, ``audit layers``) looks names up here, so that
one name means one layer everywhere:

- a model run image by image (``ImageByImage``, a graph fixed at a batch of one) adds no
  ``model.`` prefix: its layers have the names of the model inside;
- the ONNX twin's ``Scope`` levels (``layer1``, ``layer1.0``) hold no computation of their own
  and are not layers; nor is the holder of graph constants;
- a name the twin does not have gets one line with the closest names (``difflib``), and the
  reason where the exporter is why: a convolution the dynamo exporter fused into its BatchNorm
  (``OnnxGraphModule.fused_into``) is named after the BatchNorm, whose output it computes.
"""

from __future__ import annotations

import difflib

from torch import nn

from audit.errors import AuditError
from audit.models.onnx_graph.graph import OnnxGraphModule, Scope, _Constants

CLOSEST = 5


def inner_model(model: nn.Module) -> nn.Module:
    """The model itself, without the per-image wrapper of a graph fixed at a batch of one."""
    from audit.models.loader import ImageByImage

    return model.model if isinstance(model, ImageByImage) else model


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
    raise AuditError(f"{what}: {source} has no layer {name!r}; {unknown_layer_hint(model, name, list(layers))}")


def unknown_layer_hint(model: nn.Module, name: str, valid: list[str]) -> str:
    """The end of an unknown-layer message: why (a fused convolution) or the closest names."""
    inner = inner_model(model)
    fused = inner.fused_into.get(name) if isinstance(inner, OnnxGraphModule) else None
    if fused is not None:
        return (f"the exporter fused it into the BatchNorm {fused!r}, which computes the BatchNorm's output: "
                f"name {fused!r}, or export without fusing (torch.onnx.export(..., optimize=False))")
    closest = difflib.get_close_matches(name, valid, n=CLOSEST, cutoff=0.5) or valid[:CLOSEST]
    return f"closest: {', '.join(closest)} (`audit layers MODEL` lists all {len(valid)})"
