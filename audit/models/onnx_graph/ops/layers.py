"""Operators with weights: Conv, ConvTranspose, BatchNormalization, InstanceNormalization,
LayerNormalization, Gemm, MatMul.

With constant weights each becomes a subclass of the matching ``torch.nn`` layer (so
``isinstance(m, nn.Conv2d)``, ``reset_parameters()`` and hooks work) holding ``nn.Parameter``
copies; with weights computed at runtime (rare, e.g. ONNX's own node tests) a functional module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from audit.models.onnx_graph.ops.base import Converted, Lambda, NodeSpec, register
from audit.models.onnx_graph.ops.padding import Padding, spatial_attrs, symmetric, torch_order


class _OnnxConv:
    """Mixin for ``nn.ConvNd``: optional asymmetric/auto padding before the convolution."""

    onnx_padding: Padding | None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.onnx_padding is not None:
            x = self.onnx_padding(x)
        return self._conv_forward(x, self.weight, self.bias)  # type: ignore[attr-defined]


class Conv1d(_OnnxConv, nn.Conv1d):
    pass


class Conv2d(_OnnxConv, nn.Conv2d):
    pass


class Conv3d(_OnnxConv, nn.Conv3d):
    pass


_CONV = {1: Conv1d, 2: Conv2d, 3: Conv3d}
_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONVT_FN = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


class ConvFunction(nn.Module):
    """Conv whose weight is a runtime input; the spatial rank comes from the weight."""

    def __init__(self, node: NodeSpec) -> None:
        super().__init__()
        self.attrs = {k: node.attr(k) for k in ("strides", "dilations", "pads", "auto_pad")}
        self.groups = node.attr("group", 1)

    def forward(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        nd = w.dim() - 2
        strides, dilations, pads, auto = _spatial_defaults(self.attrs, nd)
        padding = Padding(pads, auto, list(w.shape[2:]), strides, dilations)
        return _CONV_FN[nd](padding(x), w, b, strides, 0, dilations, self.groups)


def _spatial_defaults(attrs: dict, nd: int) -> tuple[list[int], list[int], list[int] | None, str]:
    """(strides, dilations, pads or None for SAME_*, auto_pad) with ONNX defaults filled in."""
    auto = attrs["auto_pad"] or "NOTSET"
    pads = None if auto.startswith("SAME") else (
        [0] * (2 * nd) if auto == "VALID" or attrs["pads"] is None else list(attrs["pads"]))
    return list(attrs["strides"] or [1] * nd), list(attrs["dilations"] or [1] * nd), pads, auto


@register("Conv")
def conv(node: NodeSpec) -> Converted:
    w = node.const(1)
    if w is None or (node.has(2) and not node.is_const(2)):
        return ConvFunction(node), (0, 1, 2)
    nd = w.dim() - 2
    if nd not in _CONV:
        raise node.unsupported(f"{nd}-d convolution")
    strides, dilations, pads, auto = spatial_attrs(node, nd)
    groups = node.attr("group", 1)
    kernel = list(w.shape[2:])
    sym = symmetric(pads)
    module = _CONV[nd](
        w.shape[1] * groups, w.shape[0], tuple(kernel), tuple(strides),
        padding=tuple(sym) if sym is not None else 0, dilation=tuple(dilations), groups=groups,
        bias=node.has(2), device="meta",
    )
    module.weight = node.param(1, "weight")
    if node.has(2):
        module.bias = node.param(2, "bias")
    module.onnx_padding = None if sym is not None else Padding(pads, auto, kernel, strides, dilations)
    return module, (0,)


class _OnnxConvTranspose:
    """ConvTranspose as the ONNX spec defines it: full transposed convolution, then
    ``output_padding`` zeros at the end, then ``pads`` cropped (derived from ``output_shape`` /
    ``auto_pad`` when given), then bias."""

    onnx_attrs: dict

    def forward(self, x: torch.Tensor, w: torch.Tensor | None = None, b: torch.Tensor | None = None) -> torch.Tensor:
        w = self.weight if w is None else w  # type: ignore[attr-defined]
        b = self.bias if b is None else b  # type: ignore[attr-defined]
        nd = w.dim() - 2
        a = self.onnx_attrs
        strides, dilations, pads, auto = _spatial_defaults(a, nd)
        out_pad = list(a["output_padding"] or [0] * nd)
        out_shape = None if a["output_shape"] is None else list(a["output_shape"])[-nd:]
        y = _CONVT_FN[nd](x, w, None, strides, 0, 0, a["groups"], dilations)
        sizes, kernel = x.shape[2:], w.shape[2:]
        begins, ends = [], []
        for i in range(nd):
            if out_shape is not None or pads is None:
                full = strides[i] * (sizes[i] - 1) + out_pad[i] + (kernel[i] - 1) * dilations[i] + 1
                target = out_shape[i] if out_shape is not None else sizes[i] * strides[i]
                total = full - target
                begin = total // 2 if auto == "SAME_UPPER" else total - total // 2
                begins.append(begin)
                ends.append(total - begin)
            else:
                begins.append(pads[i])
                ends.append(pads[i + nd])
        crop = torch_order([-p for p in begins] + [op - e for op, e in zip(out_pad, ends)])
        if any(crop):
            y = F.pad(y, crop)
        if b is not None:
            y = y + b.reshape((1, -1) + (1,) * nd)
        return y


class ConvTranspose1d(_OnnxConvTranspose, nn.ConvTranspose1d):
    pass


class ConvTranspose2d(_OnnxConvTranspose, nn.ConvTranspose2d):
    pass


class ConvTranspose3d(_OnnxConvTranspose, nn.ConvTranspose3d):
    pass


class ConvTransposeFunction(_OnnxConvTranspose, nn.Module):
    """ConvTranspose whose weight is a runtime input."""

    weight = None
    bias = None


_CONVT_CLS = {1: ConvTranspose1d, 2: ConvTranspose2d, 3: ConvTranspose3d}


@register("ConvTranspose")
def conv_transpose(node: NodeSpec) -> Converted:
    keys = ("strides", "dilations", "pads", "auto_pad", "output_padding", "output_shape")
    attrs = {k: node.attr(k) for k in keys} | {"groups": node.attr("group", 1)}
    w = node.const(1)
    if w is None or (node.has(2) and not node.is_const(2)):
        module: nn.Module = ConvTransposeFunction()
        module.onnx_attrs = attrs
        return module, (0, 1, 2)
    nd = w.dim() - 2
    if nd not in _CONVT_CLS:
        raise node.unsupported(f"{nd}-d transposed convolution")
    strides, dilations, _, _ = spatial_attrs(node, nd)
    groups = attrs["groups"]
    module = _CONVT_CLS[nd](
        w.shape[0], w.shape[1] * groups, tuple(w.shape[2:]), tuple(strides),
        dilation=tuple(dilations), groups=groups, bias=node.has(2), device="meta",
    )
    module.weight = node.param(1, "weight")
    if node.has(2):
        module.bias = node.param(2, "bias")
    module.onnx_attrs = attrs
    return module, (0,)


class BatchNorm(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` accepting any input of rank ≥ 2 (ONNX BatchNormalization is
    rank-agnostic); eval: ``(x - mean) / sqrt(var + eps) * weight + bias``."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected input of rank >= 2, got {input.dim()}")


def batch_norm_fn(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor,
                  var: torch.Tensor, eps: float) -> torch.Tensor:
    return F.batch_norm(x, mean, var, scale, bias, False, 0.0, eps)


class BatchStatistics(nn.Module):
    """BatchNormalization with ``training_mode=1`` (ONNX-15): normalise with the batch's own
    statistics over every axis but the channel (1), ``y = (x - μ) / sqrt(σ² + eps) * scale + B``
    with the population variance σ²; optional outputs ``mean * m + μ * (1 - m)`` and
    ``var * m + σ² * (1 - m)`` (momentum ``m``). Before opset 14 several outputs mean training
    mode; its ``saved_mean``/``saved_var`` outputs are μ and σ² here. The weight-standardised
    convolutions of BiT export as this on their (constant) weights, so the graph folds it."""

    def __init__(self, eps: float, momentum: float, outputs: int) -> None:
        super().__init__()
        self.eps, self.momentum, self.outputs = eps, momentum, outputs

    def forward(self, x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor,
                var: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        dims = (0,) + tuple(range(2, x.dim()))
        shape = (1, -1) + (1,) * (x.dim() - 2)
        batch_mean = x.mean(dims)
        batch_var = x.var(dims, correction=0)
        y = (x - batch_mean.reshape(shape)) * torch.rsqrt(batch_var.reshape(shape) + self.eps)
        y = y * scale.reshape(shape) + bias.reshape(shape)
        if self.outputs == 1:
            return y
        m = self.momentum
        outputs = (y, mean * m + batch_mean * (1 - m), var * m + batch_var * (1 - m), batch_mean, batch_var)
        return outputs[:self.outputs]


@register("BatchNormalization")
def batch_norm(node: NodeSpec) -> Converted:
    eps = node.attr("epsilon", 1e-5)
    if node.attr("training_mode", 0) or (node.opset < 14 and len(node.outputs) > 1):
        return BatchStatistics(eps, node.attr("momentum", 0.9), len(node.outputs)), (0, 1, 2, 3, 4)
    if not all(node.is_const(i) for i in range(1, 5)):
        return Lambda(batch_norm_fn, eps=eps), (0, 1, 2, 3, 4)
    channels = node.const(1).numel()
    module = BatchNorm(channels, eps=eps, momentum=1.0 - node.attr("momentum", 0.9), device="meta")
    module.weight = node.param(1, "weight")
    module.bias = node.param(2, "bias")
    module.running_mean = node.buffer(3, "running_mean")
    module.running_var = node.buffer(4, "running_var")
    module.num_batches_tracked = torch.tensor(0, dtype=torch.long)
    return module, (0,)


class InstanceNorm(nn.Module):
    """ONNX InstanceNormalization: per-sample, per-channel normalisation, then scale and bias."""

    def __init__(self, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = weight, bias, eps

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None, b: torch.Tensor | None = None) -> torch.Tensor:
        w = self.weight if scale is None else scale
        b = self.bias if b is None else b
        return F.instance_norm(x, weight=w, bias=b, eps=self.eps)


@register("InstanceNormalization")
def instance_norm(node: NodeSpec) -> Converted:
    eps = node.attr("epsilon", 1e-5)
    if node.is_const(1) and node.is_const(2):
        return InstanceNorm(node.param(1, "weight"), node.param(2, "bias"), eps), (0,)
    return InstanceNorm(None, None, eps), (0, 1, 2)


class LayerNorm(nn.LayerNorm):
    """ONNX LayerNormalization-17: normalise over dims ``axis…``, then ``* scale + bias``
    (both broadcast). An ``nn.LayerNorm`` (``normalized_shape`` is the scale's shape) so
    re-initialisation and ``isinstance`` checks treat it as one."""

    def __init__(self, axis: int, eps: float, weight: torch.Tensor | None, bias: torch.Tensor | None,
                 stats: bool) -> None:
        nn.Module.__init__(self)
        self.axis, self.eps, self.stats = axis, eps, stats
        self.normalized_shape = tuple(weight.shape) if weight is not None else ()
        self.elementwise_affine = weight is not None
        self.weight, self.bias = weight, bias

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None,
                b: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, ...]:
        w = self.weight if scale is None else scale
        b = self.bias if b is None else b
        axis = self.axis % x.dim()
        dims = tuple(range(axis, x.dim()))
        shape = x.shape[axis:]
        if not self.stats and w.shape == shape and (b is None or b.shape == shape):
            return F.layer_norm(x, shape, w, b, self.eps)
        mean = x.mean(dims, keepdim=True)
        inv_std = torch.rsqrt(((x - mean) ** 2).mean(dims, keepdim=True) + self.eps)
        y = (x - mean) * inv_std * w
        y = y if b is None else y + b
        return (y, mean, inv_std) if self.stats else y


@register("LayerNormalization")
def layer_norm(node: NodeSpec) -> Converted:
    if node.attr("stash_type", 1) != 1:
        raise node.unsupported("stash_type other than float")
    axis, eps = node.attr("axis", -1), node.attr("epsilon", 1e-5)
    stats = len([o for o in node.outputs if o]) > 1
    if node.is_const(1) and (not node.has(2) or node.is_const(2)):
        bias = node.param(2, "bias") if node.has(2) else None
        return LayerNorm(axis, eps, node.param(1, "weight"), bias, stats), (0,)
    return LayerNorm(axis, eps, None, None, stats), (0, 1, 2)


class Gemm(nn.Linear):
    """ONNX Gemm ``alpha * A' @ B' + beta * C`` as a Linear layer: ``weight`` is ``B'`` in
    torch's (out, in) layout; ``bias`` keeps C's ONNX shape (broadcast)."""

    def __init__(self, weight: nn.Parameter, bias: nn.Parameter | None, alpha: float, beta: float, trans_a: bool) -> None:
        nn.Module.__init__(self)
        self.out_features, self.in_features = weight.shape
        self.weight, self.bias = weight, bias
        self.alpha, self.beta, self.trans_a = alpha, beta, trans_a
        self.fast = alpha == 1.0 and beta == 1.0 and not trans_a and (bias is None or bias.dim() == 1)

    def forward(self, a: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if self.fast and c is None:
            return F.linear(a, self.weight, self.bias)
        y = F.linear(a.t() if self.trans_a else a, self.weight)
        if self.alpha != 1.0:
            y = y * self.alpha
        c = self.bias if c is None else c
        if c is not None:
            y = y + (c * self.beta if self.beta != 1.0 else c)
        return y


def gemm_fn(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None = None, *, alpha: float,
            beta: float, trans_a: bool, trans_b: bool) -> torch.Tensor:
    y = (a.t() if trans_a else a) @ (b.t() if trans_b else b)
    if alpha != 1.0:
        y = y * alpha
    return y if c is None else y + beta * c


@register("Gemm")
def gemm(node: NodeSpec) -> Converted:
    alpha, beta = node.attr("alpha", 1.0), node.attr("beta", 1.0)
    trans_a, trans_b = bool(node.attr("transA", 0)), bool(node.attr("transB", 0))
    if node.is_const(1) and not node.is_const(0):
        weight = node.param(1, "weight", transpose=not trans_b)
        if node.has(2) and node.is_const(2):
            return Gemm(weight, node.param(2, "bias"), alpha, beta, trans_a), (0,)
        return Gemm(weight, None, alpha, beta, trans_a), (0, 2)
    return Lambda(gemm_fn, alpha=alpha, beta=beta, trans_a=trans_a, trans_b=trans_b), (0, 1, 2)


class MatMulLinear(nn.Linear):
    """``A @ B (+ bias)`` with a constant 2-D ``B``, as a Linear (``weight = B.T``). The bias
    is a third input only ``patterns`` writes (an ``Add`` of a constant vector fused in)."""

    def __init__(self, weight: nn.Parameter, bias: nn.Parameter | None) -> None:
        nn.Module.__init__(self)
        self.out_features, self.in_features = weight.shape
        self.weight, self.bias = weight, bias

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return F.linear(a, self.weight, self.bias)


def matmul_fn(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    y = torch.matmul(a, b)
    return y if bias is None else y + bias


@register("MatMul")
def matmul(node: NodeSpec) -> Converted:
    b = node.const(1)
    if (b is not None and b.dim() == 2 and b.is_floating_point() and not node.is_const(0)
            and (not node.has(2) or node.is_const(2))):
        bias = node.param(2, "bias") if node.has(2) else None
        return MatMulLinear(node.param(1, "weight", transpose=True), bias), (0,)
    return Lambda(matmul_fn), (0, 1, 2)


def einsum(*xs: torch.Tensor, equation: str) -> torch.Tensor:
    return torch.einsum(equation, *xs)


@register("Einsum")
def einsum_op(node: NodeSpec) -> Converted:
    return Lambda(einsum, equation=node.attr("equation").replace(" ", "")), node.present()
