"""The converter interface: an ONNX node in, a torch module and its runtime inputs out.

A converter receives a :class:`NodeSpec` (attributes parsed, inputs known at build time
available as tensors) and returns ``(module, positions)``: ``module(*tensors)`` computes the
node's outputs (a tuple when the node has several) from the inputs at ``positions`` (ONNX input
indices; an absent optional input, or a ``None`` position, is passed as ``None``). Inputs a converter consumes at build
time (weights that become ``nn.Parameter``, shapes, axes) are left out of ``positions``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from audit.models.onnx_graph.errors import Unsupported

Converted = tuple[nn.Module, tuple[int | None, ...]]
Converter = Callable[["NodeSpec"], Converted]
CONVERTERS: dict[str, Converter] = {}


def register(*op_types: str) -> Callable[[Converter], Converter]:
    """Decorator: register a converter for one or more ONNX op types (default domain)."""

    def add(fn: Converter) -> Converter:
        for op in op_types:
            CONVERTERS[op] = fn
        return fn

    return add


def tensor_from_proto(proto: onnx.TensorProto) -> torch.Tensor:
    """TensorProto → torch tensor (a copy); raises Unsupported for dtypes torch lacks."""
    if proto.data_type == onnx.TensorProto.STRING:
        raise Unsupported("string tensors")
    try:
        array = numpy_helper.to_array(proto)
    except Exception as exc:  # pragma: no cover - exotic encodings
        raise Unsupported(f"tensor dtype {onnx.TensorProto.DataType.Name(proto.data_type)}") from exc
    return to_torch(array)


def to_torch(array: np.ndarray) -> torch.Tensor:
    try:
        return torch.from_numpy(np.array(array, copy=True))
    except TypeError as exc:
        raise Unsupported(f"dtype {array.dtype}") from exc


class NodeSpec:
    """What a converter sees of one node."""

    def __init__(self, proto: onnx.NodeProto, opset: int, consts: dict[str, torch.Tensor]) -> None:
        self.proto = proto
        self.op_type = proto.op_type
        self.opset = opset
        self.inputs = list(proto.input)
        self.outputs = list(proto.output)
        self.attrs: dict[str, Any] = {}
        for a in proto.attribute:
            value = onnx.helper.get_attribute_value(a)
            self.attrs[a.name] = value.decode() if isinstance(value, bytes) else value
        self._consts = consts
        self.params: dict[str, str] = {}  # parameter/buffer attribute -> ONNX value it came from
        self.transposed: set[str] = set()  # attributes stored transposed relative to ONNX

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    def has(self, i: int) -> bool:
        return i < len(self.inputs) and self.inputs[i] != ""

    def const(self, i: int) -> torch.Tensor | None:
        """The input's value if it is known at build time (initializer, Constant, folded)."""
        return self._consts.get(self.inputs[i]) if self.has(i) else None

    def const_value(self, name: str) -> torch.Tensor | None:
        """A value known at build time by name (outer-scope values a subgraph reads)."""
        return self._consts.get(name)

    def is_const(self, i: int) -> bool:
        return self.has(i) and self.inputs[i] in self._consts

    def ints(self, i: int) -> list[int] | None:
        c = self.const(i)
        return None if c is None else [int(v) for v in c.reshape(-1).tolist()]

    def param(self, i: int, attr: str, transpose: bool = False) -> nn.Parameter:
        """A trainable copy of constant input ``i``, recorded as the source of ``attr``."""
        value = self.const(i)
        assert value is not None
        self.params[attr] = self.inputs[i]
        if transpose:
            self.transposed.add(attr)
            value = value.t()
        return nn.Parameter(value.clone().contiguous(), requires_grad=value.is_floating_point())

    def buffer(self, i: int, attr: str) -> torch.Tensor:
        value = self.const(i)
        assert value is not None
        self.params[attr] = self.inputs[i]
        return value.clone()

    def present(self, *positions: int) -> tuple[int, ...]:
        """Positions of inputs to pass at runtime: the given ones, or all when none given."""
        return positions if positions else tuple(range(len(self.inputs)))

    def runtime(self, i: int) -> int | None:
        """``i`` if input ``i`` must be passed at runtime, None if absent or constant."""
        return i if self.has(i) and not self.is_const(i) else None

    def unsupported(self, reason: str) -> Unsupported:
        return Unsupported(reason)


def op_snake(op_type: str) -> str:
    """``GlobalAveragePool`` → ``global_average_pool``."""
    out = []
    for i, ch in enumerate(op_type):
        if ch.isupper() and i and (not op_type[i - 1].isupper() or (i + 1 < len(op_type) and op_type[i + 1].islower())):
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


class Lambda(nn.Module):
    """A stateless op: ``fn(*inputs, **kwargs)``; ``fn`` is a torch function or a module-level one."""

    def __init__(self, fn: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__()
        self.fn = fn
        self.kwargs = kwargs

    def forward(self, *inputs: Any) -> Any:
        return self.fn(*inputs, **self.kwargs)

    def extra_repr(self) -> str:
        name = getattr(self.fn, "__name__", repr(self.fn))
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{name}{', ' + args if args else ''}"


def stateless(fn: Callable[..., Any], node: NodeSpec, *positions: int, **kwargs: Any) -> Converted:
    return Lambda(fn, **kwargs), node.present(*positions)
