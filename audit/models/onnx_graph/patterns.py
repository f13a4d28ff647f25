"""Fusion of operators the legacy exporter writes out as arithmetic, so the twin runs one torch
op instead of a chain of element-wise ones (ConvNeXt and ViT ran at 0.71× eager speed).

- GELU, exact: ``x · 0.5 · (1 + erf(x / √2))`` (``Div`` by √2 or ``Mul`` by 1/√2; the three
  products in any grouping and order) → ``Gelu`` (``F.gelu``).
- GELU, tanh approximation: ``x · 0.5 · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`` with ``x³``
  as ``Pow(x, 3)`` or ``x · x · x`` → ``Gelu`` with ``approximate="tanh"``.
- LayerNorm before opset 17: ``d = x - mean(x)``, ``d / sqrt(mean(d²) + eps) · w + b`` over
  trailing axes given as negative numbers, with constant ``eps``, ``w``, ``b``
  → ``LayerNormalization`` (``F.layer_norm``), whose ``weight``/``bias`` parameters come from
  the initializers of ``w`` and ``b``.
- Linear on a tensor of rank > 2: ``MatMul(x, W) + b`` with constant 2-D ``W`` and 1-D ``b``
  → ``MatMul(x, W, b)``, a bias input only the twin reads (an ``nn.Linear`` with both
  parameters, one ``F.linear`` call).

A chain is fused only if no value inside it is read elsewhere or is a graph output. The fused
node keeps the name and metadata of the chain's last node, so it gets the same module path.
Constants match to a relative 1e-4 (exporters write them rounded to float32).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

# A pattern is a variable (str: any value, the same value at each use), a scalar constant
# (float), ("const", name) (a constant value, captured), ("=", name, pattern) (the value the
# pattern matched, captured) or (op_type, *operand patterns).
Pattern = Any
COMMUTATIVE = {"Add", "Mul"}


class _Graph:
    """Producers, consumers and constant values of a graph's values."""

    def __init__(self, graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> None:
        self.producer = {o: n for n in nodes for o in n.output}
        self.readers: dict[str, int] = {}
        for node in nodes:
            for name in node.input:
                self.readers[name] = self.readers.get(name, 0) + 1
        for out in graph.output:
            self.readers[out.name] = self.readers.get(out.name, 0) + 1
        self.consts = {i.name: i for i in graph.initializer}

    def proto(self, value: str) -> onnx.TensorProto | None:
        """The tensor of a constant value: an initializer or a ``Constant``, through ``Identity``."""
        if value in self.consts:
            return self.consts[value]
        node = self.producer.get(value)
        if node is not None and node.op_type == "Identity":
            return self.proto(node.input[0])
        if node is not None and node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            return node.attribute[0].t
        return None

    def constant(self, value: str) -> np.ndarray | None:
        proto = self.proto(value)
        return None if proto is None else numpy_helper.to_array(proto)

    def scalar(self, value: str) -> float | None:
        """A constant floating-point value with one element (read without converting big weights)."""
        proto = self.proto(value)
        if proto is None or math.prod(proto.dims) != 1:
            return None
        array = numpy_helper.to_array(proto)
        return float(array.reshape(())) if array.dtype.kind == "f" else None

    def match(self, pattern: Pattern, value: str, bound: dict[str, str], nodes: list[onnx.NodeProto]) -> bool:
        """Whether ``value`` is computed by ``pattern``; extends ``bound`` (variable → value) and
        ``nodes`` (the operators matched) on success."""
        if isinstance(pattern, str):
            if pattern in bound:
                return bound[pattern] == value
            bound[pattern] = value
            return True
        if isinstance(pattern, float):
            c = self.scalar(value)
            return c is not None and math.isclose(c, pattern, rel_tol=1e-4)
        head, *args = pattern
        if head == "const":
            if self.proto(value) is None or args[0] in bound:
                return False
            bound[args[0]] = value
            return True
        if head == "=":  # ("=", name, pattern): bind name to the value pattern matched
            name, inner = args
            if name in bound:
                return bound[name] == value
            if not self.match(inner, value, bound, nodes):
                return False
            bound[name] = value
            return True
        node = self.producer.get(value)
        if node is None or node.op_type != head or node.domain not in ("", "ai.onnx") or len(node.input) < len(args):
            return False
        orders = [args, args[::-1]] if head in COMMUTATIVE and len(args) == 2 else [args]
        for order in orders:
            trial, found = dict(bound), [node]
            if all(self.match(p, v, trial, found) for p, v in zip(order, node.input)):
                bound.update(trial)
                nodes.extend(found)
                return True
        return False

    def private(self, nodes: list[onnx.NodeProto], root: onnx.NodeProto) -> bool:
        """Every value computed inside the chain is read only inside it."""
        inside: dict[str, int] = {}
        for node in nodes:
            for name in node.input:
                inside[name] = inside.get(name, 0) + 1
        return all(self.readers.get(o, 0) == inside.get(o, 0) for n in nodes if n is not root for o in n.output)


def _product(x: Pattern, half: Pattern, rest: Pattern) -> list[Pattern]:
    """``x · half · rest`` in the three groupings (the matcher tries both operand orders)."""
    return [("Mul", ("Mul", x, rest), half), ("Mul", ("Mul", x, half), rest), ("Mul", ("Mul", rest, half), x)]


_ERF = [("Add", ("Erf", scaled), 1.0) for scaled in (("Div", "x", math.sqrt(2)), ("Mul", "x", 1 / math.sqrt(2)))]
_CUBES = [("Pow", "x", 3.0), ("Mul", "x", ("Mul", "x", "x")), ("Mul", ("Mul", "x", "x"), "x")]
_TANH = [("Add", ("Tanh", ("Mul", math.sqrt(2 / math.pi), ("Add", "x", ("Mul", 0.044715, cube)))), 1.0) for cube in _CUBES]
GELU = [(p, "none") for e in _ERF for p in _product("x", 0.5, e)] + [(p, "tanh") for t in _TANH for p in _product("x", 0.5, t)]

_CENTRED = ("=", "d", ("Sub", "x", ("ReduceMean", "x")))
LAYER_NORM = ("Add", ("Mul", ("Div", _CENTRED, ("Sqrt", ("Add", ("ReduceMean", ("Pow", "d", 2.0)), ("const", "eps")))),
                      ("const", "w")), ("const", "b"))

LINEAR = ("Add", ("MatMul", "x", ("const", "w")), ("const", "b"))


def _reduced_axes(node: onnx.NodeProto, graph: _Graph) -> list[int] | None:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("keepdims", 1) != 1:
        return None
    if "axes" in attrs:
        return list(attrs["axes"])
    axes = graph.constant(node.input[1]) if len(node.input) > 1 and node.input[1] else None
    return None if axes is None else [int(a) for a in axes.reshape(-1)]


def _fused(root: onnx.NodeProto, op_type: str, inputs: list[str], **attrs: Any) -> onnx.NodeProto:
    node = helper.make_node(op_type, inputs, list(root.output), name=root.name, **attrs)
    node.metadata_props.extend(root.metadata_props)
    return node


def _chain(graph: _Graph, pattern: Pattern, root: onnx.NodeProto) -> tuple[dict[str, str], list[onnx.NodeProto]] | None:
    """(bound values, matched nodes) when ``root``'s output is computed by ``pattern`` and no
    value inside the chain is read outside it, else None."""
    bound: dict[str, str] = {}
    nodes: list[onnx.NodeProto] = []
    if graph.match(pattern, root.output[0], bound, nodes) and graph.private(nodes, root):
        return bound, nodes
    return None


def _match_gelu(graph: _Graph, root: onnx.NodeProto) -> tuple[onnx.NodeProto, list[onnx.NodeProto]] | None:
    for pattern, approximate in GELU:
        if (found := _chain(graph, pattern, root)) is not None:
            bound, nodes = found
            return _fused(root, "Gelu", [bound["x"]], approximate=approximate), nodes
    return None


def _match_layer_norm(graph: _Graph, root: onnx.NodeProto) -> tuple[onnx.NodeProto, list[onnx.NodeProto]] | None:
    if (found := _chain(graph, LAYER_NORM, root)) is None:
        return None
    bound, nodes = found
    means = [n for n in nodes if n.op_type == "ReduceMean"]
    axes = [_reduced_axes(n, graph) for n in means]
    k = len(axes[0] or [])
    if not k or any(a is None or sorted(a) != list(range(-k, 0)) for a in axes):
        return None
    eps, w, b = (graph.constant(bound[n]) for n in ("eps", "w", "b"))
    if eps.size != 1 or w.ndim > k or b.ndim > k or w.dtype.kind != "f":
        return None
    return _fused(root, "LayerNormalization", [bound["x"], bound["w"], bound["b"]], axis=-k,
                  epsilon=float(eps.reshape(()))), nodes


def _match_linear(graph: _Graph, root: onnx.NodeProto) -> tuple[onnx.NodeProto, list[onnx.NodeProto]] | None:
    if (found := _chain(graph, LINEAR, root)) is None:
        return None
    bound, nodes = found
    w, b = graph.proto(bound["w"]), graph.proto(bound["b"])  # shapes only: W may be large
    if len(w.dims) != 2 or list(b.dims) != [w.dims[1]] or helper.tensor_dtype_to_np_dtype(w.data_type).kind != "f":
        return None
    return _fused(root, "MatMul", [bound["x"], bound["w"], bound["b"]]), nodes


def fuse_patterns(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with the chains above fused (a copy if any was found, else ``model`` itself)."""
    nodes = list(model.graph.node)  # one set of node objects: matches are kept by identity
    graph = _Graph(model.graph, nodes)
    replaced: dict[int, onnx.NodeProto] = {}
    removed: set[int] = set()
    for node in nodes:
        if id(node) in removed:
            continue
        found = None
        if node.op_type == "Mul":
            found = _match_gelu(graph, node)
        elif node.op_type == "Add":
            found = _match_layer_norm(graph, node) or _match_linear(graph, node)
        if found is not None:
            fused, chain = found
            replaced[id(node)] = fused
            removed.update(id(n) for n in chain if n is not node)
    if not replaced:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(replaced.get(id(n), n) for n in nodes if id(n) not in removed)
    return out
