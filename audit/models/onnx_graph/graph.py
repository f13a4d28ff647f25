"""``OnnxGraphModule``: an ONNX graph as a differentiable torch module.

At construction the graph is converted once: nodes are sorted topologically, each becomes a
module (see ``ops``), nodes whose inputs are all constant are evaluated right away (constant
folding: ``Constant``, ``Identity`` of initializers, shape arithmetic on weights; operators
without a converter by onnx's reference implementation, see ``folding``), and the rest
form an execution plan of ``(module name, input slots, output slots)``. ``forward`` only walks
that plan over a list of value slots.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
import torch
from torch import nn

from audit.errors import AuditError
from audit.models.onnx_graph.errors import Unsupported, UnsupportedOperatorError
from audit.models.onnx_graph.folding import foldable, node_inputs, reference_fold
from audit.models.onnx_graph.naming import assign_names, dotted, module_path, parameter_owner, sanitize
from audit.models.onnx_graph.ops import CONVERTERS, NodeSpec
from audit.models.onnx_graph.ops.base import tensor_from_proto
from audit.models.onnx_graph.patterns import fuse_patterns

DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class OnnxSource:
    """Where a twin parameter or buffer came from in the ONNX graph.

    ``value``: the node input it was read from; ``initializer``: the initializer holding it
    (through ``Identity`` chains), None if it was computed; ``transposed``: stored transposed
    (Gemm/MatMul weights in torch's (out, in) layout)."""

    node: str
    value: str
    initializer: str | None
    transposed: bool = False


class _Constants(nn.Module):
    """Holds graph constants needed at runtime as buffers (they follow ``.to(device)``)."""


class Scope(nn.Module):
    """A level of the module tree that holds no node itself (``layer1``, ``layer1.0``), like an
    ``nn.Sequential`` or a block of the original code."""


def place(root: nn.Module, name: str, module: nn.Module) -> str:
    """Add ``module`` under the dotted ``name``, creating ``Scope`` levels on the way; returns
    the name it got. A level taken by a node's module gets a trailing ``_`` (``fc`` a layer and
    ``fc.add`` wanted below it → ``fc_.add``), a taken leaf name a ``_1``, ``_2``… suffix."""
    *levels, leaf = name.split(".")
    parent, path = root, []
    for level in levels:
        while (not isinstance(parent._modules.get(level), Scope)) and (level in parent._modules or hasattr(parent, level)):
            level += "_"
        if level not in parent._modules:
            parent.add_module(level, Scope())
        parent, path = parent._modules[level], [*path, level]
    base, k = leaf, 0
    while hasattr(parent, leaf):
        k += 1
        leaf = f"{base}_{k}"
    parent.add_module(leaf, module)
    return ".".join([*path, leaf])


def _opsets(model: onnx.ModelProto) -> dict[str, int]:
    opsets = {imp.domain: imp.version for imp in model.opset_import}
    if "ai.onnx" in opsets:
        opsets.setdefault("", opsets["ai.onnx"])
    return opsets


def check_supported(model: onnx.ModelProto) -> None:
    """Raise UnsupportedOperatorError naming every operator the twin has no converter for that
    stays on the runtime path (nodes whose inputs are all constant are folded at build time,
    see ``folding``): its domain, opset and node names."""
    opsets = _opsets(model)
    graph = model.graph
    known = {i.name for i in graph.initializer}
    missing: dict[str, list[str]] = {}
    for node in topo_sort(list(graph.node), known | {i.name for i in graph.input}):
        if foldable(node, known):
            known.update(node.output)
        elif node.domain not in DEFAULT_DOMAINS or node.op_type not in CONVERTERS:
            key = f"{node.op_type} (domain '{node.domain or 'ai.onnx'}', opset {opsets.get(node.domain, '?')})"
            missing.setdefault(key, []).append(node.name or "(unnamed)")
    if missing:
        raise UnsupportedOperatorError([
            f"{key} node {names[0]!r}" + (f" and {len(names) - 1} more" if len(names) > 1 else "")
            for key, names in missing.items()])


def convert_or_fold(spec: NodeSpec, consts: dict[str, torch.Tensor],
                    opsets: dict[str, int]) -> tuple[nn.Module, list[str]] | None:
    """The node's module and runtime input values, or None if it was folded into ``consts``:
    all its inputs are constant, and its converter's module (or, for an operator without one,
    onnx's reference implementation) computed its outputs. Raises Unsupported."""
    node = spec.proto
    constant = foldable(node, consts)
    module = None
    if node.domain in DEFAULT_DOMAINS and node.op_type in CONVERTERS:
        try:
            module, positions = CONVERTERS[node.op_type](spec)
        except Unsupported:
            if not constant:
                raise
    elif not constant:
        raise Unsupported("no converter")
    if module is None:
        outputs = reference_fold(node, consts, opsets)
    else:
        inputs = [spec.inputs[p] if p is not None and spec.has(p) else "" for p in positions]
        if spec.params or not all(not n or n in consts for n in inputs):
            return module, inputs
        with torch.no_grad():
            out = module(*[consts[n] if n else None for n in inputs])
        outputs = list(out) if type(out) is tuple else [out]
        if any(isinstance(v, list) for v in outputs):  # sequences stay runtime values
            return module, inputs
    for name, value in zip(node.output, outputs):
        if name:
            consts[name] = value
    return None


def topo_sort(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    """Nodes in an order where each input is produced before use (ONNX graphs usually are)."""
    order: list[onnx.NodeProto] = []
    known = set(available) | {""}
    pending = list(nodes)
    while pending:
        rest = []
        for node in pending:
            if all(i in known for i in node_inputs(node)):
                order.append(node)
                known.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            missing = sorted({i for n in rest for i in node_inputs(n) if i not in known})
            raise AuditError(f"ONNX graph: inputs {missing[:5]} are never produced (cycle or broken graph); "
                             f"re-export the model")
        pending = rest
    return order


class OnnxGraphModule(nn.Module):
    """The differentiable twin of an ONNX graph; ``forward(*inputs)`` returns the first graph
    output, or a tuple if there are several.

    Attributes: ``input_names``/``output_names`` (graph I/O), ``onnx_sources`` (twin
    parameter/buffer name → :class:`OnnxSource`), ``onnx_nodes`` (module name → ONNX node name).
    Sub-modules form a tree named by the exporter's module paths (``naming``): ``layer1.0.conv1``.
    ``fused_into``: a convolution's module path → the layer the dynamo optimizer fused it into (a
    Conv computing its BatchNorm's output, named after the BatchNorm). ``folded_batchnorm``: the
    convolutions whose weights the legacy exporter computed (``onnx::Conv_*``: a BatchNorm
    folded in, so their output is that BatchNorm's, although they keep the convolution's name).
    """

    def __init__(self, model: onnx.ModelProto) -> None:
        super().__init__()
        if model.functions:
            model = onnx.inliner.inline_local_functions(model)
        model = fuse_patterns(model)
        check_supported(model)
        graph = model.graph
        opsets = _opsets(model)
        opset = opsets.get("", 1)
        consts: dict[str, torch.Tensor] = {}
        problems: list[str] = []
        for init in graph.initializer:
            try:
                consts[init.name] = tensor_from_proto(init)
            except Unsupported as exc:
                problems.append(f"initializer {init.name!r}: {exc}")
        self.input_names = [i.name for i in graph.input if i.name not in consts]
        self.output_names = [o.name for o in graph.output]

        kept: list[tuple[onnx.NodeProto, nn.Module, list[str], NodeSpec]] = []
        for node in topo_sort(list(graph.node), set(consts) | set(self.input_names)):
            spec = NodeSpec(node, opset, consts)
            try:
                converted = convert_or_fold(spec, consts, opsets)
            except Unsupported as exc:
                domain = node.domain or "ai.onnx"
                problems.append(f"{node.op_type} (domain '{domain}', opset {opsets.get(node.domain, '?')}) "
                                f"node {node.name!r}: {exc}")
                continue
            if converted is not None:
                kept.append((node, *converted, spec))
        if problems:
            raise UnsupportedOperatorError(problems)

        identity_of = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity"}
        initializers = {i.name for i in graph.initializer}

        def initializer_of(value: str) -> str | None:
            while value not in initializers and value in identity_of:
                value = identity_of[value]
            return value if value in initializers else None

        reshaped = {n.output[0]: n.input[0] for n in graph.node if n.op_type in ("Identity", "Transpose") and n.input}

        def owner_of(value: str | None) -> str | None:
            """The module path in the name of the parameter a node reads: the value's own name,
            else that of the Identity or Transpose chain's source. The legacy exporter reads equal
            initializers through Identity nodes named after each parameter (two LayerNorms at
            their initial ones and zeros share blocks.0.norm1.weight) and, without constant
            folding, a Linear's weight through a Transpose."""
            while value is not None:
                if (owner := parameter_owner(value)) is not None:
                    return owner
                value = reshaped.get(value)
            return None

        firsts = [next(iter(k[3].params.values())) if k[3].params else None for k in kept]
        weights = [initializer_of(v) if v is not None else None for v in firsts]
        owners = [owner_of(v) for v in firsts]
        #: code_modules: nodes named by a module path of the code itself (not "<module>.<op>")
        names, self.code_modules = assign_names([k[0] for k in kept], owners, [bool(k[3].params) for k in kept])
        self.fused_into: dict[str, str] = {}
        self.folded_batchnorm: set[str] = set()
        for (node, *_), name, owner, weight in zip(kept, names, owners, weights):
            if node.op_type != "Conv":
                continue
            recorded = module_path(node)
            if owner is not None and recorded and owner != recorded and not owner.startswith(recorded + "."):
                self.fused_into[dotted(owner)] = name
            elif weight is not None and weight.startswith("onnx::"):
                self.folded_batchnorm.add(name)
        self.onnx_sources: dict[str, OnnxSource] = {}
        self.onnx_nodes: dict[str, str] = {}

        slots: dict[str, int] = {"": 0}  # slot 0 is always None; the last slot takes unused outputs

        def slot(value: str) -> int:
            return slots.setdefault(value, len(slots))

        self._input_slots = [slot(n) for n in self.input_names]
        self.constants = _Constants()
        self._const_slots: list[tuple[int, str]] = []
        const_buffers: dict[str, str] = {}

        def read(value: str) -> int:
            if value in consts and value not in const_buffers:
                buffer = sanitize(value)
                while buffer in self.constants._buffers:
                    buffer += "_"
                self.constants.register_buffer(buffer, consts[value])
                const_buffers[value] = buffer
                self._const_slots.append((slot(value), buffer))
            return slot(value)

        plan = []
        for (node, module, inputs, spec), wanted in zip(kept, names):
            name = place(self, wanted, module)
            self.onnx_nodes[name] = node.name
            for attr, value in spec.params.items():
                self.onnx_sources[f"{name}.{attr}"] = OnnxSource(
                    node.name, value, initializer_of(value), attr in spec.transposed)
            plan.append((name, [read(v) if v else 0 for v in inputs], [slot(o) if o else -1 for o in node.output]))
        self._output_slots = [read(o) for o in self.output_names]
        self._n_slots = len(slots) + 1
        self._plan = [(name, ins, [o if o >= 0 else self._n_slots - 1 for o in outs]) for name, ins, outs in plan]
        self._steps = [(self.get_submodule(name), ins, outs) for name, ins, outs in self._plan]

    @property
    def plan(self) -> list[tuple[str, list[int], list[int]]]:
        """The execution plan, for reading: (module name, input slots, output slots) per node in
        run order; the name is the module's in ``named_modules()``. Slots name values: ``input_slots`` hold the graph inputs, ``output_slots`` its
        outputs, slot 0 a missing optional input."""
        return self._plan

    @property
    def input_slots(self) -> list[int]:
        return self._input_slots

    @property
    def output_slots(self) -> list[int]:
        return self._output_slots

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if len(inputs) != len(self._input_slots):
            raise TypeError(f"expected {len(self._input_slots)} input(s) {self.input_names}, got {len(inputs)}")
        env: list = [None] * self._n_slots
        for s, x in zip(self._input_slots, inputs):
            env[s] = x
        buffers = self.constants._buffers
        for s, name in self._const_slots:
            env[s] = buffers[name]
        for module, ins, outs in self._steps:
            y = module(*[env[i] for i in ins])
            if type(y) is tuple:
                for o, v in zip(outs, y):
                    env[o] = v
            else:
                env[outs[0]] = y
        if len(self._output_slots) == 1:
            return env[self._output_slots[0]]
        return tuple(env[s] for s in self._output_slots)


def build_torch_twin(model: onnx.ModelProto) -> OnnxGraphModule:
    """The differentiable twin of ``model``, in eval mode (raises UnsupportedOperatorError)."""
    return OnnxGraphModule(model).eval()
