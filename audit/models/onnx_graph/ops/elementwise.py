"""Element-wise math, comparisons, logic, ``Mod``, ``Where``, ``Clip`` and ``Cast``."""

from __future__ import annotations

import functools

import onnx
import torch
from torch import nn

from audit.models.onnx_graph.ops.base import Converted, NodeSpec, register, stateless

DTYPES: dict[int, torch.dtype] = {
    onnx.TensorProto.FLOAT: torch.float32,
    onnx.TensorProto.DOUBLE: torch.float64,
    onnx.TensorProto.FLOAT16: torch.float16,
    onnx.TensorProto.BFLOAT16: torch.bfloat16,
    onnx.TensorProto.INT8: torch.int8,
    onnx.TensorProto.INT16: torch.int16,
    onnx.TensorProto.INT32: torch.int32,
    onnx.TensorProto.INT64: torch.int64,
    onnx.TensorProto.UINT8: torch.uint8,
    onnx.TensorProto.BOOL: torch.bool,
}


def torch_dtype(node: NodeSpec, onnx_type: int) -> torch.dtype:
    if onnx_type not in DTYPES:
        raise node.unsupported(f"dtype {onnx.TensorProto.DataType.Name(onnx_type)}")
    return DTYPES[onnx_type]


def div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """ONNX Div truncates for integer types."""
    if a.is_floating_point():
        return torch.div(a, b)
    return torch.div(a, b, rounding_mode="trunc")


def pow_(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """ONNX Pow's output has the base's type."""
    return torch.pow(a, b).to(a.dtype)


_BINARY = {
    "Add": torch.add,
    "Sub": torch.sub,
    "Mul": torch.mul,
    "Div": div,
    "Pow": pow_,
    "Equal": torch.eq,
    "Less": torch.lt,
    "LessOrEqual": torch.le,
    "Greater": torch.gt,
    "GreaterOrEqual": torch.ge,
    "And": torch.logical_and,
    "Or": torch.logical_or,
    "Xor": torch.logical_xor,
}

_UNARY = {
    "Erf": torch.erf,
    "Exp": torch.exp,
    "Log": torch.log,
    "Sqrt": torch.sqrt,
    "Neg": torch.neg,
    "Abs": torch.abs,
    "Reciprocal": torch.reciprocal,
    "Floor": torch.floor,
    "Ceil": torch.ceil,
    "Sign": torch.sign,
    "Not": torch.logical_not,
    "Sin": torch.sin,
    "Cos": torch.cos,
    "Tan": torch.tan,
    "Asin": torch.asin,
    "Acos": torch.acos,
    "Atan": torch.atan,
    "Sinh": torch.sinh,
    "Cosh": torch.cosh,
    "Asinh": torch.asinh,
    "Acosh": torch.acosh,
    "Atanh": torch.atanh,
    "Round": torch.round,  # half to even, as ONNX
    "IsNaN": torch.isnan,
}


@register(*_BINARY)
def binary(node: NodeSpec) -> Converted:
    return stateless(_BINARY[node.op_type], node, 0, 1)


@register(*_UNARY)
def unary(node: NodeSpec) -> Converted:
    return stateless(_UNARY[node.op_type], node, 0)


def _variadic(op: str, *xs: torch.Tensor) -> torch.Tensor:
    fn = {"Max": torch.maximum, "Min": torch.minimum, "Sum": torch.add, "Mean": torch.add}[op]
    out = functools.reduce(fn, xs)
    return out / len(xs) if op == "Mean" else out


def mod(a: torch.Tensor, b: torch.Tensor, fmod: bool) -> torch.Tensor:
    """ONNX Mod: ``fmod=1`` keeps the dividend's sign (C ``fmod``, ``torch.fmod``); ``fmod=0``
    (integers only) the divisor's (Python ``%``, ``torch.remainder``)."""
    return torch.fmod(a, b) if fmod else torch.remainder(a, b)


@register("Mod")
def mod_op(node: NodeSpec) -> Converted:
    return stateless(mod, node, 0, 1, fmod=bool(node.attr("fmod", 0)))


def is_inf(x: torch.Tensor, negative: bool, positive: bool) -> torch.Tensor:
    return (torch.isneginf(x) & negative) | (torch.isposinf(x) & positive)


@register("IsInf")
def is_inf_op(node: NodeSpec) -> Converted:
    return stateless(is_inf, node, 0, negative=bool(node.attr("detect_negative", 1)),
                     positive=bool(node.attr("detect_positive", 1)))


@register("Max", "Min", "Sum", "Mean")
def variadic(node: NodeSpec) -> Converted:
    return stateless(functools.partial(_variadic, node.op_type), node)


@register("Where")
def where(node: NodeSpec) -> Converted:
    return stateless(torch.where, node, 0, 1, 2)


def clip(x: torch.Tensor, lo: torch.Tensor | None = None, hi: torch.Tensor | None = None) -> torch.Tensor:
    """ONNX Clip: ``min(max(x, lo), hi)``; when ``lo > hi`` every value becomes ``hi``."""
    if lo is not None:
        x = torch.maximum(x, lo.to(x.dtype))
    if hi is not None:
        x = torch.minimum(x, hi.to(x.dtype))
    return x


@register("Clip")
def clip_op(node: NodeSpec) -> Converted:
    if node.opset < 11:  # min/max were attributes
        lo = node.attr("min", float("-inf"))
        hi = node.attr("max", float("inf"))
        return stateless(torch.clamp, node, 0, min=lo, max=hi)
    return stateless(clip, node, 0, 1, 2)


def cast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return x.to(dtype)


@register("Cast")
def cast_op(node: NodeSpec) -> Converted:
    if node.attr("saturate", 1) != 1:
        raise node.unsupported("saturate=0")
    return stateless(cast, node, 0, dtype=torch_dtype(node, node.attr("to")))


def cast_like(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return x.to(like.dtype)


@register("CastLike")
def cast_like_op(node: NodeSpec) -> Converted:
    return stateless(cast_like, node, 0, 1)


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@register("Identity")
def identity(node: NodeSpec) -> Converted:
    return Identity(), (0,)


class Dropout(nn.Dropout):
    """ONNX Dropout: identity in eval; drops with probability ``ratio`` while training.

    The optional ``mask`` output is all ``True`` in eval (Dropout-13 spec)."""

    def __init__(self, p: float, with_mask: bool) -> None:
        super().__init__(p)
        self.with_mask = with_mask

    def forward(self, x: torch.Tensor, ratio: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        p = self.p if ratio is None else float(ratio)
        if not self.training or p == 0:
            return (x, torch.ones_like(x, dtype=torch.bool)) if self.with_mask else x
        mask = torch.rand_like(x, dtype=torch.float32) >= p
        y = x * mask / (1 - p)
        return (y, mask) if self.with_mask else y


@register("Dropout")
def dropout(node: NodeSpec) -> Converted:
    if node.has(2) and (node.const(2) is None or bool(node.const(2))):
        raise node.unsupported("training_mode=True (random outputs)")
    ratio = node.const(1)
    p = float(ratio) if ratio is not None else node.attr("ratio", 0.5)
    with_mask = len(node.outputs) > 1 and node.outputs[1] != ""
    return Dropout(p, with_mask), (0, node.runtime(1))
