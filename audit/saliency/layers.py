"""Finding the layers that Grad-CAM and guided backprop hook into on ``model.layered``.

A layer's output is read as a (C, h, w) map by ``audit.saliency.tokens``: convolutional feature
maps as they are, a transformer's (N, T, D) tokens without the class (and distillation) token
on the patch grid, Swin-style (N, h, w, C) stages permuted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from audit.errors import AuditError
from audit.models.classifier import Classifier
from audit.models.feature_map import head_feature_map
from audit.models.layer_names import enclosing_block, find_layer, inner_model, named_layers, run_with_hooks
from audit.models.native import Tap
from audit.models.onnx_graph import OnnxGraphModule
from audit.saliency.attention import AttentionTap
from audit.saliency.tokens import CHANNELS, Grid, grid_of, map_shape


@dataclass(frozen=True)
class FeatureLayer:
    """The layer a Grad-CAM-style method uses: its name (``audit.models.layer_names``), the
    (C, H, W) shape of the map made from its output, whether it is the default (not
    ``-o M.layer=NAME``), how its output becomes that map (``grid``), and whose output in the
    original code it computes (``eager_output``): itself, or the BatchNorm an exporter folded
    into it (``absorbed_batchnorm``)."""

    name: str
    shape: tuple[int, int, int]
    default: bool
    grid: Grid = Grid(CHANNELS, 0, 0, 0)
    eager_output: str = ""
    absorbed_batchnorm: bool = False

    def to_json(self) -> dict[str, Any]:
        found = {"name": self.name, "shape": list(self.shape), "default": self.default,
                 "eager_output": self.eager_output or self.name, "absorbed_batchnorm": self.absorbed_batchnorm}
        if self.grid.layout != CHANNELS:
            found.update(layout=self.grid.layout, extra_tokens=self.grid.extra)
        return found


def layer_origin(model: Classifier, name: str) -> tuple[str, bool]:
    """(eager_output, absorbed_batchnorm) of layer ``name`` (see ``FeatureLayer``): a twin
    convolution the legacy exporter folded a BatchNorm into computes that BatchNorm's output,
    one the dynamo optimizer fused is already named after its BatchNorm; a twin node named after
    its operator (``relu``, ``layer1.0.add``) is a function the code calls, no module of it."""
    twin = inner_model(model.layered)
    layer = named_layers(twin).get(name)
    function = f"no module: {name} is a function the original code calls (named after its operator)"
    if isinstance(layer, Tap):
        return function, False
    if not isinstance(twin, OnnxGraphModule) or layer is None:
        return name, False
    if name in twin.folded_batchnorm:
        return f"the BatchNorm that follows {name} in the original code", True
    if name not in twin.code_modules:
        return function, False
    return name, name in twin.fused_into.values()


def feature_layer(model: Classifier, name: str | None, method: str) -> FeatureLayer:
    """The layer called ``name``, checked to give (N, C, H, W) feature maps, (N, T, D) tokens on
    the patch grid or (N, H, W, C) maps (``audit.saliency.tokens``), or by default the input of
    the global pooling that feeds the classifier head (``audit.models.feature_map``), else, for
    a transformer, the tokens that enter its last attention (``token_layer``). All run one
    forward pass of a zero image, so a bad choice fails before any data is read."""
    probe = torch.zeros((1, *model.spec.shape), device=model.device)
    size = (model.spec.height, model.spec.width)
    if name is None:
        try:
            found = head_feature_map(model.layered, probe)
        except AuditError as exc:
            try:
                return token_layer(model.layered, probe, size)
            except NoAttention:
                why = ""
            except AuditError as token_error:
                why = f" and {token_error}"
            raise AuditError(
                f"{method}: model {model.path} {exc}{why}, so it has no default layer; name a layer with feature "
                f"maps or tokens with -o {method}.layer=NAME (`audit layers MODEL` lists them), or use --method gradient"
            ) from exc
        name = enclosing_block(model.layered, found.layer)
        return FeatureLayer(name, found.shape, True, Grid(CHANNELS, 0, 0, 0), *layer_origin(model, name))
    name = str(name)  # ``--option grad-cam.layer=0`` arrives as the int 0
    shape = _output_shape(model, name, method, probe)
    if len(shape) not in (3, 4):
        raise AuditError(
            f"{method}: layer {name!r} of model {model.path} gives a {len(shape)}-D output {shape}; choose a "
            f"convolutional layer with (N, C, H, W) activations or a transformer's (N, T, D) tokens, or leave out "
            f"-o {method}.layer for the default"
        )
    try:
        grid = grid_of(shape, size)
    except AuditError as exc:
        raise AuditError(f"{method}: layer {name!r} of model {model.path}: {exc}; choose another layer, or leave "
                         f"out -o {method}.layer for the default") from exc
    return FeatureLayer(name, map_shape(shape, grid), False, grid, *layer_origin(model, name))


class NoAttention(AuditError):
    """The model computes no attention probabilities: no token layer to default to."""


def token_layer(module: nn.Module, probe: torch.Tensor, size: tuple[int, int]) -> FeatureLayer:
    """A transformer's default Grad-CAM layer: the last module, in the order outputs are made,
    whose output has the shape (1, T, D) of the model's tokens (T the tokens of its last
    attention, D the width of the last (1, T, ·) output of any module) and is made before the
    last attention's probabilities: the last block's normalised input (``blocks[-1].norm1``).
    Not the last block's output: a class-token model reads only the class token after its last
    attention, so the patch tokens there have zero gradient and Grad-CAM would be zero."""
    outputs: list[tuple[int, str, tuple[int, ...]]] = []
    with AttentionTap() as tap:
        def record(name: str, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                outputs.append((tap.tick(), name, tuple(output.shape)))

        run_with_hooks(module, probe, named_layers(module), record)
    if not tap.maps:
        raise NoAttention("computes no attention probabilities")
    tokens = tap.maps[-1].shape[-1]
    token_outputs = [entry for entry in outputs if len(entry[2]) == 3 and entry[2][:2] == (1, tokens)]
    width = token_outputs[-1][2][2] if token_outputs else None
    before = [entry for entry in token_outputs if entry[0] < tap.events[-1] and entry[2][2] == width]
    if not before:
        raise AuditError(f"has no module that outputs its (1, {tokens}, D) tokens before its last attention")
    _, name, shape = before[-1]
    grid = grid_of(shape, size)
    return FeatureLayer(name, map_shape(shape, grid), default=True, grid=grid, eager_output=name)


def layer_module(model: Classifier, name: str, method: str) -> nn.Module:
    """The layer of ``model.layered`` called ``name``; the error lists the closest names."""
    return find_layer(model.layered, name, f"-o {method}.layer", model.path)


def _output_shape(model: Classifier, name: str, method: str, probe: torch.Tensor) -> tuple[int, ...]:
    """The shape of layer ``name``'s output (its last call's) on ``probe``; () if not a tensor."""
    shapes: list[tuple[int, ...]] = []

    def record(_: str, output: Any) -> None:
        shapes.append(tuple(output.shape) if isinstance(output, torch.Tensor) else ())

    run_with_hooks(model.layered, probe, {name: layer_module(model, name, method)}, record)
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
