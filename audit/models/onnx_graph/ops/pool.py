"""Pooling and ``Pad``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from audit.models.onnx_graph.ops.base import Converted, NodeSpec, register
from audit.models.onnx_graph.ops.padding import Padding, spatial_attrs, symmetric, torch_order

_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


class _Pool(nn.Module):
    """Shared set-up: torch's own (symmetric, at most half-kernel) padding when possible,
    else explicit padding (``-inf`` for max, zeros for average) before an unpadded pool."""

    def __init__(self, node: NodeSpec, pad_value: float) -> None:
        super().__init__()
        self.kernel = list(node.attr("kernel_shape"))
        nd = len(self.kernel)
        if nd not in _MAX:
            raise node.unsupported(f"{nd}-d pooling")
        self.strides, self.dilations, pads, auto = spatial_attrs(node, nd)
        self.ceil_mode = bool(node.attr("ceil_mode", 0))
        sym = symmetric(pads)
        if sym is not None and all(p <= k // 2 for p, k in zip(sym, self.kernel)):
            self.padding, self.pre_pad = sym, None
        else:
            self.padding = [0] * nd
            self.pre_pad = Padding(pads, auto, self.kernel, self.strides, self.dilations, pad_value)
        self.nd = nd


class MaxPool(_Pool):
    def __init__(self, node: NodeSpec) -> None:
        super().__init__(node, float("-inf"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_pad is not None:
            x = self.pre_pad(x)
        return _MAX[self.nd](x, self.kernel, self.strides, self.padding, self.dilations, self.ceil_mode)


@register("MaxPool")
def max_pool(node: NodeSpec) -> Converted:
    if len([o for o in node.outputs if o]) > 1:
        raise node.unsupported("Indices output")
    return MaxPool(node), (0,)


class AveragePool(_Pool):
    """With explicit padding and ``count_include_pad=0`` the sum is divided by the number of
    real (unpadded) elements in each window."""

    def __init__(self, node: NodeSpec) -> None:
        super().__init__(node, 0.0)
        if any(d != 1 for d in self.dilations):
            raise node.unsupported("dilations")
        self.count_include_pad = bool(node.attr("count_include_pad", 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool = _AVG[self.nd]
        if self.pre_pad is None:
            return pool(x, self.kernel, self.strides, self.padding, self.ceil_mode, self.count_include_pad)
        y = pool(self.pre_pad(x), self.kernel, self.strides, 0, self.ceil_mode)
        if self.count_include_pad:
            return y
        ones = torch.ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype, device=x.device)
        return y / pool(self.pre_pad(ones), self.kernel, self.strides, 0, self.ceil_mode)


@register("AveragePool")
def average_pool(node: NodeSpec) -> Converted:
    return AveragePool(node), (0,)


class GlobalPool(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(2, x.dim()))
        if self.kind == "max":
            return torch.amax(x, dims, keepdim=True)
        return torch.mean(x, dims, keepdim=True)

    def extra_repr(self) -> str:
        return self.kind


@register("GlobalAveragePool")
def global_average_pool(node: NodeSpec) -> Converted:
    return GlobalPool("average"), (0,)


@register("GlobalMaxPool")
def global_max_pool(node: NodeSpec) -> Converted:
    return GlobalPool("max"), (0,)


def _pad_index(n: int, begin: int, end: int, mode: str, device: torch.device) -> torch.Tensor:
    i = torch.arange(-begin, n + end, device=device)
    if mode == "edge":
        return i.clamp(0, n - 1)
    if mode == "wrap":
        return i % n
    if n == 1:  # reflect
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    i = i % period
    return torch.where(i > n - 1, period - i, i)


class Pad(nn.Module):
    """ONNX Pad-19. ``constant`` uses ``F.pad`` (negative pads crop); ``reflect``/``edge``/
    ``wrap`` gather indices per padded axis, which works for any rank."""

    def __init__(self, mode: str, pads: list[int] | None, value: float | None, axes: list[int] | None) -> None:
        super().__init__()
        self.mode, self.pads, self.value, self.axes = mode, pads, value, axes

    def forward(self, x: torch.Tensor, pads: torch.Tensor | None = None, value: torch.Tensor | None = None,
                axes: torch.Tensor | None = None) -> torch.Tensor:
        p = self.pads if pads is None else [int(v) for v in pads.tolist()]
        ax = self.axes if axes is None else [int(v) for v in axes.tolist()]
        rank = x.dim()
        ax = [a % rank for a in ax] if ax is not None else list(range(rank))
        full = [0] * (2 * rank)
        for k, a in enumerate(ax):
            full[a], full[a + rank] = p[k], p[k + len(ax)]
        if self.mode == "constant":
            fill = self.value if value is None else value.item()
            return F.pad(x, torch_order(full), value=fill or 0.0)
        for a in range(rank):
            if full[a] or full[a + rank]:
                idx = _pad_index(x.shape[a], full[a], full[a + rank], self.mode, x.device)
                x = torch.index_select(x, a, idx)
        return x


@register("Pad")
def pad(node: NodeSpec) -> Converted:
    mode = node.attr("mode", "constant")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise node.unsupported(f"mode={mode}")
    if node.opset < 11:
        return Pad(mode, list(node.attr("pads")), node.attr("value", 0.0), None), (0,)
    value = node.const(2)
    module = Pad(mode, node.ints(1), None if value is None else value.item(), node.ints(3))
    return module, (0, node.runtime(1), node.runtime(2), node.runtime(3))
