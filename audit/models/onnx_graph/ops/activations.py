"""Activation functions; each node becomes its own module (``Relu`` is always ``nn.ReLU``,
which captum's GuidedBackprop and Deconvolution hook)."""

from __future__ import annotations

import torch
from torch import nn

from audit.models.onnx_graph.ops.base import Converted, NodeSpec, register

_SELU_ALPHA = 1.67326319217681884765625  # ONNX Selu defaults
_SELU_GAMMA = 1.05070102214813232421875


@register("Relu")
def relu(node: NodeSpec) -> Converted:
    return nn.ReLU(), (0,)


@register("LeakyRelu")
def leaky_relu(node: NodeSpec) -> Converted:
    return nn.LeakyReLU(node.attr("alpha", 0.01)), (0,)


@register("Elu")
def elu(node: NodeSpec) -> Converted:
    return nn.ELU(node.attr("alpha", 1.0)), (0,)


@register("Celu")
def celu(node: NodeSpec) -> Converted:
    return nn.CELU(node.attr("alpha", 1.0)), (0,)


class Selu(nn.Module):
    """``gamma * (x if x > 0 else alpha * (exp(x) - 1))`` with ONNX's attribute values."""

    def __init__(self, alpha: float, gamma: float) -> None:
        super().__init__()
        self.alpha, self.gamma = alpha, gamma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gamma * torch.where(x > 0, x, self.alpha * torch.expm1(x))


@register("Selu")
def selu(node: NodeSpec) -> Converted:
    return Selu(node.attr("alpha", _SELU_ALPHA), node.attr("gamma", _SELU_GAMMA)), (0,)


class HardSigmoid(nn.Module):
    """``max(0, min(1, alpha * x + beta))`` (ONNX defaults alpha=0.2, beta=0.5; torch uses 1/6)."""

    def __init__(self, alpha: float, beta: float) -> None:
        super().__init__()
        self.alpha, self.beta = alpha, beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.alpha * x + self.beta, 0.0, 1.0)


@register("HardSigmoid")
def hard_sigmoid(node: NodeSpec) -> Converted:
    return HardSigmoid(node.attr("alpha", 0.2), node.attr("beta", 0.5)), (0,)


@register("HardSwish")
def hard_swish(node: NodeSpec) -> Converted:
    return nn.Hardswish(), (0,)


@register("Sigmoid")
def sigmoid(node: NodeSpec) -> Converted:
    return nn.Sigmoid(), (0,)


@register("Tanh")
def tanh(node: NodeSpec) -> Converted:
    return nn.Tanh(), (0,)


class Softplus(nn.Module):
    """``log(exp(x) + 1)`` computed stably (torch's ``nn.Softplus`` switches to ``x`` above 20)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logaddexp(x, torch.zeros((), dtype=x.dtype, device=x.device))


@register("Softplus")
def softplus(node: NodeSpec) -> Converted:
    return Softplus(), (0,)


@register("Softsign")
def softsign(node: NodeSpec) -> Converted:
    return nn.Softsign(), (0,)


@register("Gelu")
def gelu(node: NodeSpec) -> Converted:
    return nn.GELU(approximate=node.attr("approximate", "none")), (0,)


@register("Mish")
def mish(node: NodeSpec) -> Converted:
    return nn.Mish(), (0,)


class PRelu(nn.Module):
    """``x if x >= 0 else slope * x``, slope broadcast unidirectionally (ONNX PRelu-16)."""

    def __init__(self, weight: torch.Tensor | None) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, x: torch.Tensor, slope: torch.Tensor | None = None) -> torch.Tensor:
        slope = self.weight if slope is None else slope
        return torch.where(x >= 0, x, x * slope)


@register("PRelu")
def prelu(node: NodeSpec) -> Converted:
    if node.is_const(1):
        return PRelu(node.param(1, "weight")), (0,)
    return PRelu(None), (0, 1)
