"""Constant folding of nodes the twin has no converter for.

A node whose inputs are all known at build time (initializers, ``Constant``, values folded
before it) never runs in ``forward``: operators the twin converts are evaluated by their own
module, any other (``Mod`` on shapes, weight standardisation…) by onnx's reference
implementation (``onnx.reference.ReferenceEvaluator``). Only operators left on the runtime path
can be unsupported. A node's inputs include the outer-scope values its subgraphs (``Loop``
bodies, ``If`` branches) read.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import onnx
import torch
from onnx import helper

from audit.errors import first_line
from audit.models.onnx_graph.errors import Unsupported
from audit.models.onnx_graph.ops.base import to_torch

# Operators whose output is not a function of their inputs: never evaluated at build time.
NONDETERMINISTIC = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                              "Multinomial", "Bernoulli"})


def subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    graphs = []
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            graphs.append(a.g)
        elif a.type == onnx.AttributeProto.GRAPHS:
            graphs.extend(a.graphs)
    return graphs


def outer_names(graph: onnx.GraphProto) -> list[str]:
    """Values ``graph`` reads from enclosing scopes (in first-use order), nested subgraphs included."""
    defined = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    used: dict[str, None] = {}
    for node in graph.node:
        for name in node_inputs(node):
            if name not in defined:
                used[name] = None
        defined.update(node.output)
    for o in graph.output:
        if o.name not in defined:
            used[o.name] = None
    return list(used)


def node_inputs(node: onnx.NodeProto) -> list[str]:
    """Explicit inputs, then the outer-scope values read by the node's subgraphs."""
    names = list(node.input)
    for graph in subgraphs(node):
        names += [n for n in outer_names(graph) if n not in names]
    return names


def foldable(node: onnx.NodeProto, known: Iterable[str] | dict) -> bool:
    """All inputs known at build time, and the output a function of them."""
    return node.op_type not in NONDETERMINISTIC and all(not n or n in known for n in node_inputs(node))


def _to_numpy(value: torch.Tensor) -> np.ndarray:
    if isinstance(value, list) or value.dtype == torch.bfloat16:
        raise Unsupported("a constant input numpy cannot hold")
    return value.detach().cpu().numpy()


def reference_fold(node: onnx.NodeProto, values: dict[str, torch.Tensor], opsets: dict[str, int]) -> list[torch.Tensor]:
    """The node's outputs on its constant inputs, by onnx's reference implementation."""
    from onnx.reference import ReferenceEvaluator

    feeds = {n: _to_numpy(values[n]) for n in dict.fromkeys(node_inputs(node)) if n}
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
              for n, a in feeds.items()]
    outputs = [onnx.ValueInfoProto(name=o) for o in node.output if o]
    graph = helper.make_graph([node], "fold", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items() if d != "ai.onnx"])
    try:
        results = ReferenceEvaluator(model).run(None, feeds)
    except Exception as exc:
        raise Unsupported(f"cannot evaluate it on its constant inputs ({first_line(exc)})") from exc
    if any(isinstance(r, list) for r in results):
        raise Unsupported("folding it yields a sequence")
    return [to_torch(np.asarray(r)) for r in results]
