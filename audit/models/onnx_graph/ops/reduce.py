"""Reductions (``Reduce*``, axes as attribute before opset 18 — ReduceSum before 13 — and as
an optional input after), ``ArgMax``/``ArgMin``, ``TopK`` and ``Softmax``/``LogSoftmax``."""

from __future__ import annotations

import math

import torch
from torch import nn

from audit.models.onnx_graph.ops.base import Converted, NodeSpec, register, stateless

_EMPTY_FILL = {"Sum": 0.0, "SumSquare": 0.0, "L1": 0.0, "L2": 0.0, "Prod": 1.0, "Max": -math.inf,
               "Min": math.inf, "LogSum": -math.inf, "LogSumExp": -math.inf, "Mean": math.nan}


def _prod(x: torch.Tensor, dims: tuple[int, ...], keepdim: bool) -> torch.Tensor:
    for d in sorted(dims, reverse=True):
        x = torch.prod(x, d, keepdim=keepdim)
    return x


_REDUCE = {
    "Sum": lambda x, d, k: torch.sum(x, d, keepdim=k),
    "Mean": lambda x, d, k: torch.mean(x, d, keepdim=k),
    "Max": lambda x, d, k: torch.amax(x, d, keepdim=k),
    "Min": lambda x, d, k: torch.amin(x, d, keepdim=k),
    "Prod": _prod,
    "L1": lambda x, d, k: torch.sum(torch.abs(x), d, keepdim=k),
    "L2": lambda x, d, k: torch.sqrt(torch.sum(x * x, d, keepdim=k)),
    "SumSquare": lambda x, d, k: torch.sum(x * x, d, keepdim=k),
    "LogSum": lambda x, d, k: torch.log(torch.sum(x, d, keepdim=k)),
    "LogSumExp": lambda x, d, k: torch.logsumexp(x, d, keepdim=k),
}


class Reduce(nn.Module):
    """``Reduce<kind>``; empty axes reduce everything unless ``noop_with_empty_axes``; an empty
    reduction yields the identity element (ONNX Reduce-18 spec)."""

    def __init__(self, kind: str, axes: list[int] | None, keepdims: bool, noop: bool) -> None:
        super().__init__()
        self.kind, self.axes, self.keepdims, self.noop = kind, axes, keepdims, noop

    def forward(self, x: torch.Tensor, axes: torch.Tensor | None = None) -> torch.Tensor:
        dims = self.axes if axes is None else [int(a) for a in axes.reshape(-1).tolist()]
        if not dims:
            if self.noop:
                return x
            dims = list(range(x.dim()))
        if x.dim() == 0:
            return _REDUCE[self.kind](x.reshape(1), (0,), False).reshape(())
        norm = tuple(sorted(d % x.dim() for d in dims))
        if x.numel() == 0:
            shape = [1 if i in norm else s for i, s in enumerate(x.shape) if self.keepdims or i not in norm]
            fill = _EMPTY_FILL[self.kind]
            if x.dtype == torch.bool:
                fill = self.kind == "Min"
            return torch.full(shape, fill, dtype=x.dtype, device=x.device)
        return _REDUCE[self.kind](x, norm, self.keepdims)

    def extra_repr(self) -> str:
        return f"{self.kind}, axes={self.axes}, keepdims={self.keepdims}"


@register(*(f"Reduce{k}" for k in _REDUCE))
def reduce(node: NodeSpec) -> Converted:
    kind = node.op_type[len("Reduce"):]
    keepdims = bool(node.attr("keepdims", 1))
    noop = bool(node.attr("noop_with_empty_axes", 0))
    if "axes" in node.attrs:
        return Reduce(kind, list(node.attrs["axes"]), keepdims, noop), (0,)
    if node.has(1) and not node.is_const(1):
        return Reduce(kind, None, keepdims, noop), (0, 1)
    return Reduce(kind, node.ints(1) if node.has(1) else None, keepdims, noop), (0,)


class Softmax(nn.Module):
    """Softmax/LogSoftmax along ``axis``; before opset 13 the input is coerced to 2-D at
    ``axis`` (default 1) and normalised over the flattened trailing part, which at the last axis
    is the opset-13 softmax over that axis: it runs as such, so the attention methods' tap (a
    softmax over the last dim, ``audit.saliency.attention``) sees a legacy export's attention too."""

    def __init__(self, log: bool, axis: int, legacy: bool) -> None:
        super().__init__()
        self.fn = torch.log_softmax if log else torch.softmax
        self.axis, self.legacy = axis, legacy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axis = self.axis % x.dim() if x.dim() else 0
        if not self.legacy or axis == x.dim() - 1:
            return self.fn(x, axis if self.legacy else self.axis)
        flat = x.reshape(math.prod(x.shape[:axis]), -1)
        return self.fn(flat, 1).reshape(x.shape)


@register("Softmax", "LogSoftmax")
def softmax(node: NodeSpec) -> Converted:
    legacy = node.opset < 13
    return Softmax(node.op_type == "LogSoftmax", node.attr("axis", 1 if legacy else -1), legacy), (0,)


def arg_extreme(x: torch.Tensor, *, largest: bool, axis: int, keepdims: bool, last: bool) -> torch.Tensor:
    """ONNX ArgMax/ArgMin: the first index of the extreme value, or the last with
    ``select_last_index``."""
    if last:
        flipped = torch.flip(x, (axis,))
        index = (torch.argmax if largest else torch.argmin)(flipped, axis, keepdim=keepdims)
        return x.shape[axis] - 1 - index
    return (torch.argmax if largest else torch.argmin)(x, axis, keepdim=keepdims)


@register("ArgMax", "ArgMin")
def arg_extreme_op(node: NodeSpec) -> Converted:
    return stateless(arg_extreme, node, 0, largest=node.op_type == "ArgMax", axis=node.attr("axis", 0),
                     keepdims=bool(node.attr("keepdims", 1)), last=bool(node.attr("select_last_index", 0)))


def top_k(x: torch.Tensor, k: torch.Tensor | None = None, *, axis: int, largest: bool,
          count: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """ONNX TopK: the k largest (or smallest) values along ``axis``, sorted, and their int64
    indices; k is an input from opset 10, the attribute ``count`` before (a WILDCAT head's
    k-max/k-min pooling, ``torch.topk`` or ``torch.sort`` exported). Equal values in the order
    of their indices, as the spec requires: a stable sort (``torch.topk`` does not promise it)."""
    n = count if k is None else int(k.reshape(-1)[0])
    values, indices = torch.sort(x, dim=axis, descending=largest, stable=True)
    return values.narrow(axis, 0, n), indices.narrow(axis, 0, n)


@register("TopK")
def top_k_op(node: NodeSpec) -> Converted:
    count = node.attr("k") if node.opset < 10 else None
    return stateless(top_k, node, 0, *(() if count is not None else (1,)), axis=node.attr("axis", -1),
                     largest=bool(node.attr("largest", 1)), count=count)
