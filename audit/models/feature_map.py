"""The last spatial feature map a classifier's head reads, found from the model's graph.

A classifier ends in a global pooling (GlobalAveragePool/GlobalMaxPool, ReduceMean/ReduceMax
over H and W, an AveragePool/MaxPool whose window covers the map; torch's adaptive and
functional poolings) whose output feeds the head. Its *input* is the feature map the head
reads: Grad-CAM's layer (Selvaraju et al. 2017 use the last convolutional feature maps).
The graph is

- the execution plan of the ONNX interpreter twin (``OnnxGraphModule``; ONNX files, and
  the layered twin of TorchScript models), whose every node is a module;
- a torch.export program's module tree (``audit.models.native``): its nested graphs, run on the
  probe (``_unflattened_graph``); a call of a sub-module is a step of its own, after the steps
  inside it, that outputs the same value as the sub-module's graph;
- for any other ``nn.Module`` (in-memory models), its ``torch.fx`` trace.

One probe forward pass of a zero image gives the shapes. A pooling node is global when its
input is (N, C, H, W) and its output (N, C, 1, 1) or (N, C). A VGG-style head has none: it
flattens an (N, C, h, w) map with h·w > 1 into (N, C·h·w) (any node with these shapes, where
h × w can be a grid of the input: ``_is_spatial``), and
reads that map through any poolings between them (torchvision VGG's ``AdaptiveAvgPool2d((7,
7))``, and its last MaxPool2d): the map the first of those poolings reads counts as the pooled
one (``_through_poolings``). Of the global
poolings and flattens the logits depend on, the last ones (those no other such node depends on:
a squeeze-and-excitation block's pooling feeds the final one) must all read one tensor, which
some node computes (a flattened input image is no feature map: an MLP has none); that tensor's
producing module is the layer, named as in ``named_modules()`` so that ``-o grad-cam.layer=NAME`` selects the
same one. Where several nested modules return that tensor, the innermost one called only once
is the layer (a block ``layer4.1`` whose forward ends in ``F.relu``; not its ``nn.ReLU`` when
the block calls that twice; the twin names the block so too: ``audit.models.layer_names.enclosing_block``).
Because the twin's names follow the original module paths, the .onnx, .pt and .pt2
files of one model give the same name.

A class-map model (two outputs, logits and (N, K, h, w) class maps: ``loader.class_map_outputs``)
pools its class maps with a top-k pooling (WILDCAT, Durand et al. 2017) that is none of the
above: its pooled value is the class-map output itself, and the layer the module that makes it.
A transformer's tokens are no (N, C, H, W) map: it has no such layer (``audit.saliency.layers``
gives Grad-CAM a token layer instead; a WILDCAT head needs this one).
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import Hashable

import torch
import torch.nn.functional as F
from torch import fx, nn

from audit.errors import AuditError, first_line
from audit.models.layer_names import inner_model, run_with_hooks
from audit.models.native import is_unflattened, tap
from audit.models.onnx_graph import OnnxGraphModule
from audit.models.onnx_graph.ops.pool import AveragePool, GlobalPool, MaxPool
from audit.models.onnx_graph.ops.reduce import Reduce

TORCH_POOLINGS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d, nn.MaxPool2d)
POOLING_FUNCTIONS = (torch.mean, torch.amax, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.avg_pool2d, F.max_pool2d)
POOLING_METHODS = ("mean", "amax")
ATEN_POOLINGS = (torch.ops.aten.mean.dim, torch.ops.aten.amax.default, torch.ops.aten.adaptive_avg_pool2d.default,
                 torch.ops.aten.adaptive_max_pool2d.default, torch.ops.aten.avg_pool2d.default,
                 torch.ops.aten.max_pool2d.default, torch.ops.aten._adaptive_avg_pool2d.default)


@dataclass(frozen=True)
class Step:
    """One node of a graph: the module that runs it (its name in ``named_modules()``, None for
    a function), whether it is a pooling, and the ids of the values it reads and writes."""

    module: str | None
    pooling: bool
    inputs: tuple[Hashable, ...]
    outputs: tuple[Hashable, ...]
    #: for a function call in an unflattened program: (the module whose graph holds it, its fx
    #: node, that module's path prefix), so that ``native.tap`` can make it a layer
    site: tuple[nn.Module, fx.Node, str] | None = None
    #: True when the step applies weights (its module's parameters, or parameters it reads)
    weights: bool = False


@dataclass(frozen=True)
class Graph:
    steps: list[Step]
    outputs: tuple[Hashable, ...]
    shapes: dict[Hashable, tuple[int, ...]]


@dataclass(frozen=True)
class FeatureMap:
    """``layer``: the module whose output is the feature map; ``shape``: (C, H, W) of it."""

    layer: str
    shape: tuple[int, int, int]


def head_feature_map(module: nn.Module, probe: torch.Tensor) -> FeatureMap:
    """The feature map read by ``module``'s global pooling (module docstring); ``probe`` is one
    (1, C, H, W) input. AuditError says why there is none."""
    graph = _graph(module, probe)
    value = _pooled_value(graph, tuple(probe.shape[2:]))
    producers = [step for step in graph.steps if value in step.outputs]
    modules = [step.module for step in producers if step.module is not None and len(step.outputs) == 1]
    sites = [step.site for step in producers if step.site is not None]
    if not modules and sites:  # a function of the top-level forward (F.relu before the pooling)
        owner, node, prefix = sites[0]
        _, channels, height, width = graph.shapes[value]
        return FeatureMap(prefix + tap(owner, node), (channels, height, width))
    if not modules:
        raise AuditError("pools a tensor that no module of its own outputs")
    once = [name for name in modules if sum(step.module == name for step in graph.steps) == 1]
    if not once:
        raise AuditError(f"calls module {modules[0]!r}, which makes the pooled feature map, again afterwards")
    name = once[0]
    _, channels, height, width = graph.shapes[value]
    return FeatureMap(name, (channels, height, width))


def _pooled_value(graph: Graph, size: tuple[int, int]) -> Hashable:
    """The one value that the head reads (module docstring): a class-map model's class maps;
    else of the global poolings and spatial flattens the logits depend on, the last ones (no
    other's input is computed from their output) must all read one value."""
    if len(graph.outputs) == 2 and len(graph.shapes.get(graph.outputs[1], ())) == 4:
        return graph.outputs[1]  # (logits, class maps): the maps are what the spatial pooling reads
    used = _ancestors(graph.steps, {graph.outputs[0]})
    readers = [(step, step.inputs[0]) for step in graph.steps if step.pooling and step.outputs[0] in used
               and _is_global(graph.shapes.get(step.inputs[0]), graph.shapes.get(step.outputs[0]))]
    readers += [(step, _through_poolings(graph, step.inputs[0])) for step in graph.steps
                if step.outputs[0] in used and step.inputs
                and _is_flatten(graph.shapes.get(step.inputs[0]), graph.shapes.get(step.outputs[0]), size)]
    if not readers:
        raise AuditError("has no global pooling over H and W, nor a flattened (N, C, H, W) feature map, before "
                         "its classifier head")
    made = {value for step in graph.steps for value in step.outputs}
    features = [(step, value) for step, value in readers if value in made]
    readers = features or readers[:1]  # a linear path from the flattened pixels beside the features is no head
    upstream = set().union(*(_ancestors(graph.steps, {step.inputs[0]}) for step, _ in readers))
    read = {value for step, value in readers if step.outputs[0] not in upstream}
    if len(read) > 1:
        raise AuditError(f"has {len(read)} global poolings or flattens of different feature maps before its head")
    value = read.pop()
    if value not in made:
        raise AuditError("flattens its input image into the head: it has no (N, C, H, W) feature map before it")
    return value


def _is_flatten(before: tuple[int, ...] | None, after: tuple[int, ...] | None, size: tuple[int, int]) -> bool:
    """A spatial map (``_is_spatial``) with more than one position (h·w > 1) made (N, C·h·w): a
    VGG-style head."""
    return (before is not None and after is not None and len(before) == 4 and before[2] * before[3] > 1
            and _is_spatial(before[2:], size)
            and len(after) == 2 and after[0] == before[0] and after[1] == before[1] * before[2] * before[3])


def _is_spatial(grid: tuple[int, ...], size: tuple[int, int]) -> bool:
    """An h × w grid that can be a map of the H × W input (our rule): h ≤ H, w ≤ W and the strides
    H/h, W/w within a factor 2 of each other. A transformer's (heads, tokens, dims) reshaped at a
    batch of one is not (TinyViT: 17 × 4 for a 16 × 16 input)."""
    (h, w), (height, width) = grid, size
    return h <= height and w <= width and max(height * w, width * h) < 2 * min(height * w, width * h)


def _through_poolings(graph: Graph, value: Hashable) -> Hashable:
    """``value``, or, while a pooling makes it, that pooling's input: a pooling node (even one
    that keeps the shape), or a node without weights that reads one tensor and changes its shape (the dynamo exporter writes
    ``AdaptiveAvgPool2d((7, 7))`` of an 8 × 8 map as Transpose, GatherND, Transpose, ReduceMean).
    It stops at a node that keeps the shape (the ReLU that made the map) or applies weights."""
    while True:
        made = [step for step in graph.steps if value in step.outputs and value not in step.inputs]
        if len(made) != 1:
            return value
        step = made[0]
        data = [v for v in step.inputs if v in graph.shapes]
        if step.pooling and data:
            value = step.inputs[0]  # even one that keeps the shape (adaptive 7 × 7 of a 7 × 7 map)
            continue
        if step.weights or len(data) != 1 or graph.shapes[data[0]] == graph.shapes.get(value):
            return value
        value = data[0]


def _ancestors(steps: list[Step], values: set[Hashable]) -> set[Hashable]:
    """``values`` and every value they are computed from (steps are in execution order)."""
    found = set(values)
    for step in reversed(steps):
        if any(o in found for o in step.outputs):
            found.update(step.inputs)
    return found


def _is_global(before: tuple[int, ...] | None, after: tuple[int, ...] | None) -> bool:
    return (before is not None and after is not None and len(before) == 4
            and tuple(after) in (before[:2], (*before[:2], 1, 1)))


def _graph(module: nn.Module, probe: torch.Tensor) -> Graph:
    inner = inner_model(module)  # a per-image wrapper adds no prefix to the names (layer_names)
    if isinstance(inner, OnnxGraphModule):
        return _twin_graph(inner, probe)
    if is_unflattened(inner):
        return _unflattened_graph(inner, probe)
    return _traced_graph(module, probe)


def _twin_graph(twin: OnnxGraphModule, probe: torch.Tensor) -> Graph:
    """The interpreter's plan; shapes from forward hooks on its modules."""
    outputs: dict[str, tuple] = {}
    run_with_hooks(twin, probe, {name: twin.get_submodule(name) for name, _, _ in twin.plan}, outputs.__setitem__)
    shapes: dict[Hashable, tuple[int, ...]] = {slot: tuple(probe.shape) for slot in twin.input_slots}
    steps = []
    for name, ins, outs in twin.plan:
        values = outputs.get(name)
        for slot, value in zip(outs, values if isinstance(values, tuple) else (values,)):
            if isinstance(value, torch.Tensor):
                shapes[slot] = tuple(value.shape)
        module = twin.get_submodule(name)
        pooling = isinstance(module, (GlobalPool, AveragePool, MaxPool)) or (
            isinstance(module, Reduce) and module.kind in ("Mean", "Max"))
        steps.append(Step(name, pooling, tuple(ins), tuple(outs), weights=_has_parameters(module)))
    return Graph(steps, tuple(twin.output_slots), shapes)


def _has_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _traced_graph(module: nn.Module, probe: torch.Tensor) -> Graph:
    """``torch.fx`` trace (torch.nn layers as leaves); shapes by ``ShapeProp``."""
    from torch.fx.passes.shape_prop import ShapeProp

    try:
        traced = fx.symbolic_trace(module)
        with torch.no_grad():
            ShapeProp(traced).propagate(probe)
    except Exception as exc:
        raise AuditError(f"cannot be traced by torch.fx to find its layers ({first_line(exc)})") from exc
    steps, shapes, outputs = [], {}, ()
    for node in traced.graph.nodes:
        meta = node.meta.get("tensor_meta")
        if meta is not None and hasattr(meta, "shape"):
            shapes[node] = tuple(meta.shape)
        if node.op == "output":
            outputs = tuple(node.all_input_nodes)
        elif node.op in ("call_module", "call_function", "call_method"):
            pooling = ((node.op == "call_module" and isinstance(traced.get_submodule(node.target), TORCH_POOLINGS))
                       or (node.op == "call_function" and node.target in POOLING_FUNCTIONS)
                       or (node.op == "call_method" and node.target in POOLING_METHODS))
            first = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
            inputs = ((first,) if first is not None else ()) + tuple(n for n in node.all_input_nodes if n is not first)
            weights = (_has_parameters(traced.get_submodule(node.target)) if node.op == "call_module"
                       else any(n.op == "get_attr" for n in node.all_input_nodes))
            steps.append(Step(node.target if node.op == "call_module" else None, pooling and first is not None,
                              inputs, (node,), weights=weights))
    return Graph(steps, outputs, shapes)


def _unflattened_graph(root: nn.Module, probe: torch.Tensor) -> Graph:
    """Run the module tree of a torch.export program node by node on ``probe``: every
    ``call_function`` is a step (a pooling when it is one of ``ATEN_POOLINGS``); a call of a
    leaf ``nn`` layer is a step named by its path; a call of an ``InterpreterModule`` runs its
    graph, then adds a step named by its path that outputs the graph's result (the same value;
    with a dynamic batch a block may return several, e.g. its output and a size n·c the next
    block reuses, which ``operator.getitem`` steps then take apart)."""
    shapes: dict[Hashable, tuple[int, ...]] = {}
    steps: list[Step] = []
    counter = iter(range(1 << 62))

    def keep(value) -> int:
        key = next(counter)
        if isinstance(value, torch.Tensor):
            shapes[key] = tuple(value.shape)
        return key

    def run(module: nn.Module, path: str, args: list[tuple[int, object]]) -> tuple[int, object]:
        env: dict[fx.Node, tuple[int, object]] = {}
        inputs = iter(args)
        for node in module.graph.nodes:
            if node.op == "placeholder":
                env[node] = next(inputs)
            elif node.op == "get_attr":
                env[node] = (keep(None), attrgetter(node.target)(module))
            elif node.op == "output":
                result = node.args[0]
                result = result[0] if isinstance(result, (tuple, list)) and len(result) == 1 else result
                if isinstance(result, fx.Node):
                    return env[result]
                # several outputs (a block returning a tuple, read by getitem): their values, and a
                # step that reads them all so the ancestry of what is taken from it goes on
                value = fx.node.map_arg(result, lambda n: env[n][1])
                key = keep(value)
                steps.append(Step(None, False, tuple(env[n][0] for n in _nodes(result)), (key,)))
                return key, value
            else:
                read = [env[n][0] for n in node.all_input_nodes]
                first = env[node.args[0]][0] if node.args and isinstance(node.args[0], fx.Node) else None
                args_, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda n: env[n][1])
                if node.op == "call_module":
                    child = module.get_submodule(node.target)
                    name = f"{path}{node.target}"
                    if isinstance(getattr(child, "graph", None), fx.Graph):
                        key, value = run(child, f"{name}.", [env[n] if isinstance(n, fx.Node) else (keep(n), n)
                                                                   for n in node.args])
                        read = [key]
                    else:
                        value = child(*args_, **kwargs)
                        key = keep(value)
                    steps.append(Step(name, isinstance(child, TORCH_POOLINGS) and first is not None,
                                      tuple(read), (key,), weights=_has_parameters(child)))
                else:
                    value = node.target(*args_, **kwargs) if node.op == "call_function" else \
                        getattr(args_[0], node.target)(*args_[1:], **kwargs)
                    key = keep(value)
                    pooling = node.op == "call_function" and node.target in ATEN_POOLINGS and first is not None
                    ordered = ((first,) if first is not None else ()) + tuple(r for r in read if r != first)
                    weights = any(n.op == "get_attr" for n in node.all_input_nodes)
                    steps.append(Step(None, pooling, ordered, (key,), (module, node, path), weights))
                env[node] = (key, value)
        raise AuditError("has a graph without an output")

    try:
        with torch.no_grad():
            out, value = run(root, "", [(keep(probe), probe)])
    except AuditError:
        raise
    except Exception as exc:
        raise AuditError(f"cannot be run node by node to find its layers ({first_line(exc)})") from exc
    if isinstance(value, (tuple, list)) and steps and steps[-1].outputs == (out,):
        return Graph(steps, steps[-1].inputs, shapes)  # several outputs: the parts the last step gathered
    return Graph(steps, (out,), shapes)


def _nodes(structure: object) -> list[fx.Node]:
    """The fx nodes in a nested output structure, in order."""
    found: list[fx.Node] = []
    fx.node.map_arg(structure, lambda n: found.append(n) or n)
    return found
