"""Control flow: ``Loop`` and ``If``. Each subgraph runs as a nested twin (an
``OnnxGraphModule`` of the body); the outer-scope values it reads that are constant become its
initializers, the others extra inputs passed at runtime. Gradients flow through the nested
modules like through any other (a scripted ``GroupNorm`` exports its batch-size check as a
``Loop``)."""

from __future__ import annotations

import onnx
import torch
from onnx import helper, numpy_helper
from torch import nn

from audit.models.onnx_graph.ops.base import Converted, NodeSpec, register


def subgraph_twin(graph: onnx.GraphProto, node: NodeSpec) -> tuple[nn.Module, list[str]]:
    """The nested twin of ``graph`` and the outer values it takes at runtime (after its own inputs)."""
    from audit.models.onnx_graph.folding import outer_names
    from audit.models.onnx_graph.graph import OnnxGraphModule

    body = onnx.GraphProto()
    body.CopyFrom(graph)
    runtime = []
    for name in outer_names(graph):
        value = node.const_value(name)
        if value is None:
            runtime.append(name)
            body.input.append(onnx.ValueInfoProto(name=name))
        else:
            body.initializer.append(numpy_helper.from_array(value.detach().cpu().numpy(), name))
    model = helper.make_model(body, opset_imports=[helper.make_opsetid("", node.opset)])
    return OnnxGraphModule(model), runtime


class Loop(nn.Module):
    """ONNX Loop: ``body(i, cond, *carried, *outer) → (cond, *carried, *scan)`` while ``i < M``
    (if given) and ``cond`` (if given); returns the final carried values, then each scan output
    stacked along a new first axis (empty after no iteration)."""

    def __init__(self, body: nn.Module, carried: int, scans: int) -> None:
        super().__init__()
        self.body, self.carried, self.scans = body, carried, scans

    def forward(self, trips: torch.Tensor | None, cond: torch.Tensor | None, *values: torch.Tensor) -> tuple:
        carried, outer = list(values[:self.carried]), values[self.carried:]
        limit = None if trips is None else int(trips)
        keep = True if cond is None else bool(cond)
        scans: list[list[torch.Tensor]] = [[] for _ in range(self.scans)]
        device = next((v.device for v in (trips, cond, *values) if isinstance(v, torch.Tensor)), None)
        i = 0
        while keep and (limit is None or i < limit):
            out = self.body(torch.tensor(i, dtype=torch.int64, device=device), torch.tensor(keep, device=device),
                            *carried, *outer)
            out = out if isinstance(out, tuple) else (out,)
            keep = bool(out[0])
            carried = list(out[1:1 + self.carried])
            for scan, value in zip(scans, out[1 + self.carried:]):
                scan.append(value)
            i += 1
        stacked = [torch.stack(s) if s else torch.empty(0, device=device) for s in scans]
        return tuple(carried + stacked)


@register("Loop")
def loop(node: NodeSpec) -> Converted:
    body, outer = subgraph_twin(node.attrs["body"], node)
    first = len(node.inputs)
    scans = len(node.attrs["body"].output) - 1 - (first - 2)
    node.inputs.extend(outer)
    return Loop(body, first - 2, scans), (0, 1) + tuple(range(2, first + len(outer)))


class If(nn.Module):
    """ONNX If: runs ``then_branch`` or ``else_branch`` on the outer values each reads."""

    def __init__(self, then_branch: nn.Module, then_inputs: list[int], else_branch: nn.Module,
                 else_inputs: list[int]) -> None:
        super().__init__()
        self.then_branch, self.else_branch = then_branch, else_branch
        self.then_inputs, self.else_inputs = then_inputs, else_inputs

    def forward(self, cond: torch.Tensor, *outer: torch.Tensor) -> torch.Tensor | tuple:
        branch, picks = (self.then_branch, self.then_inputs) if bool(cond) else (self.else_branch, self.else_inputs)
        return branch(*[outer[i] for i in picks])


@register("If")
def if_op(node: NodeSpec) -> Converted:
    then_branch, then_outer = subgraph_twin(node.attrs["then_branch"], node)
    else_branch, else_outer = subgraph_twin(node.attrs["else_branch"], node)
    outer = list(dict.fromkeys(then_outer + else_outer))
    node.inputs.extend(outer)
    module = If(then_branch, [outer.index(n) for n in then_outer], else_branch, [outer.index(n) for n in else_outer])
    return module, (0,) + tuple(range(1, 1 + len(outer)))
