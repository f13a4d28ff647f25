"""Finding the layers that Grad-CAM and guided backprop hook into on ``model.layered``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from audit.errors import AuditError
from audit.models.classifier import Classifier
from audit.models.feature_map import head_feature_map
from audit.models.layer_names import enclosing_block, find_layer, inner_model, named_layers
from audit.models.onnx_graph import OnnxGraphModule


@dataclass(frozen=True)
class FeatureLayer:
    """The layer a Grad-CAM-style method uses: its name (``audit.models.layer_names``), the
    (C, H, W) shape of its output, whether it is the default (not ``-o M.layer=NAME``), and
    whose output in the original code it computes (``eager_output``): itself, or the BatchNorm
    an exporter folded into it (``absorbed_batchnorm``)."""

    name: str
    shape: tuple[int, int, int]
    default: bool
    eager_output: str = ""
    absorbed_batchnorm: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "default": self.default,
                "eager_output": self.eager_output or self.name, "absorbed_batchnorm": self.absorbed_batchnorm}


def layer_origin(model: Classifier, name: str) -> tuple[str, bool]:
    """(eager_output, absorbed_batchnorm) of layer ``name`` (see ``FeatureLayer``): a twin
    convolution the legacy exporter folded a BatchNorm into computes that BatchNorm's output,
    one the dynamo optimizer fused is already named after its BatchNorm."""
    twin = inner_model(model.layered)
    if not isinstance(twin, OnnxGraphModule) or name not in named_layers(twin):
        return name, False
    if name in twin.folded_batchnorm:
        return f"the BatchNorm that follows {name} in the original code", True
    return name, name in twin.fused_into.values()


def feature_layer(model: Classifier, name: str | None, method: str) -> FeatureLayer:
    """The layer called ``name``, checked to give (N, C, H, W) feature maps, or by default the
    input of the global pooling that feeds the classifier head (``audit.models.feature_map``).
    Both run one forward pass of a zero image, so a bad choice fails before any data is read."""
    probe = torch.zeros((1, *model.spec.shape))
    if name is None:
        try:
            found = head_feature_map(model.layered, probe)
        except AuditError as exc:
            raise AuditError(
                f"{method}: model {model.path} {exc}, so it has no default layer; name a convolutional layer "
                f"with -o {method}.layer=NAME, or use --method gradient"
            ) from exc
        name = enclosing_block(model.layered, found.layer)
        return FeatureLayer(name, found.shape, True, *layer_origin(model, name))
    name = str(name)  # ``--option grad-cam.layer=0`` arrives as the int 0
    shape = _output_shape(model, name, method, probe)
    if len(shape) != 4:
        raise AuditError(
            f"{method}: layer {name!r} of model {model.path} gives a {len(shape)}-D output {shape}; choose a "
            f"convolutional layer with (N, C, H, W) activations, or leave out -o {method}.layer for the default"
        )
    return FeatureLayer(name, tuple(shape[1:]), False, *layer_origin(model, name))  # type: ignore[arg-type]


def layer_module(model: Classifier, name: str, method: str) -> nn.Module:
    """The layer of ``model.layered`` called ``name``; the error lists the closest names."""
    return find_layer(model.layered, name, f"-o {method}.layer", model.path)


def _output_shape(model: Classifier, name: str, method: str, probe: torch.Tensor) -> tuple[int, ...]:
    """The shape of layer ``name``'s output (its last call's) on ``probe``; () if not a tensor."""
    layer = layer_module(model, name, method)
    shapes: list[tuple[int, ...]] = []

    def record(module: nn.Module, inputs: Any, output: Any) -> None:
        shapes.append(tuple(output.shape) if isinstance(output, torch.Tensor) else ())

    hook = layer.register_forward_hook(record)
    try:
        with torch.no_grad():
            model.layered(probe)
    finally:
        hook.remove()
    if not shapes:
        raise AuditError(f"{method}: layer {name!r} of model {model.path} is never called; choose another layer")
    return shapes[-1]


def require_relu_modules(model: Classifier, method: str) -> None:
    """Guided backprop rewrites the backward pass of ``nn.ReLU`` modules; without any it is the
    plain gradient, so refuse rather than mislabel the map."""
    if not any(isinstance(module, nn.ReLU) for module in model.layered.modules()):
        raise AuditError(
            f"{method} needs nn.ReLU modules; model {model.path} has none; "
            f"use --method gradient or --method input-x-gradient"
        )
