"""Readable, stable module names for the twin's layers.

1. For a node with parameters, the module path in the parameter's name where the exporter
   kept it (``block2.0.norm.weight`` → ``block2.0.norm``; read through Identity and Transpose
   nodes, see ``OnnxGraphModule``) and it lies at or below the recorded path (``node_path``). Otherwise the module path recorded by the exporter, if any:
   - dynamo exporter: node metadata ``pkg.torch.onnx.name_scopes``, e.g.
     ``['', 'layer1', 'layer1.0', 'layer1.0.conv1', 'conv2d']`` → ``layer1.0.conv1`` (the
     element before the op), or else the ``namespace`` metadata
     (``': Net/layer1: Sequential/layer1.0: Block/…'``);
   - legacy (TorchScript) exporter: node name ``/layer1/layer1.0/conv1/Conv`` → scopes
     ``layer1``, ``layer1.0``, ``conv1`` joined into ``layer1.0.conv1``: a scope that starts
     with the previous scope and a dot names a child of that container and replaces it
     (``/layer1/layer1.1/down/down.0/Conv`` → ``layer1.1.down.0``).
2. A leaf path (no other node's path lies below it) names its node directly when that node is
   the only one with this path, the only one holding weights, or all of the path's nodes
   have its op type (a module called several times: ``relu``, ``relu_1``); other nodes get
   ``<path>.<op>`` (``layer1.0.add``) or, at the root, just ``<op>`` (``flatten``), with the
   op type in snake case.
   A Conv into which the dynamo exporter's optimizer fused a BatchNorm carries the BatchNorm's
   path (``layer1.0.bn1``): that is all the exporter keeps.
3. Without a recorded path: the ONNX node name, else the op type.
4. The name is a dotted path, as in the user's code: the twin's modules form a tree of the same
   shape (``dict(twin.named_modules())["layer1.0.conv1"]``), so users name layers as in their
   own code and the state_dict keys are the original ones (``layer1.0.conv1.weight``). Each
   segment is sanitised: every character outside ``[A-Za-z0-9_]`` becomes ``_``; an unrecorded
   ONNX node name (``/Conv_3``, ``onnx::Add_7``) is one segment; a segment that clashes with an
   attribute of ``nn.Module`` (``forward``, ``training``…) gets a trailing ``_``; repeats get
   ``_1``, ``_2``… on the last segment, in graph order.
"""

from __future__ import annotations

import ast
import re
from collections import Counter

import onnx
from torch import nn

from audit.models.onnx_graph.ops.base import op_snake

#: the twin's own attributes, which a top-level layer name must not shadow
QUALIFIED = re.compile(r"^[A-Za-z_]\w*(\.\w+)+$", flags=re.ASCII)
RESERVED = {"constants", "plan", "input_slots", "output_slots", "input_names", "output_names", "onnx_sources",
            "onnx_nodes"}
_ROOT_MARKERS = {"", "_empty_nn_module_stack_from_metadata_hook"}


def module_path(node: onnx.NodeProto) -> str | None:
    """The exporter-recorded module path ('' for the root module), or None if unknown."""
    meta = {p.key: p.value for p in node.metadata_props}
    if "pkg.torch.onnx.name_scopes" in meta:
        try:
            scopes = ast.literal_eval(meta["pkg.torch.onnx.name_scopes"])
        except (ValueError, SyntaxError):
            scopes = []
        if len(scopes) >= 2:
            path = scopes[-2]
            return "" if path in _ROOT_MARKERS else path
        if scopes:
            return ""
    if "namespace" in meta:
        parts = [seg.split(":")[0].strip() for seg in meta["namespace"].split("/")]
        parts = [p for p in parts[:-1] if p not in _ROOT_MARKERS]
        return parts[-1] if parts else ""
    if node.name.startswith("/"):
        path, previous = "", ""
        for scope in node.name.split("/")[1:-1]:
            if previous and scope.startswith(previous + "."):  # a container's child: "down" then "down.0"
                path = path[: len(path) - len(previous)] + scope
            else:
                path = f"{path}.{scope}" if path else scope
            previous = scope
        return path
    return None


def sanitize(segment: str) -> str:
    """One segment of a module path, usable as a child module's name."""
    segment = re.sub(r"\W", "_", segment, flags=re.ASCII).strip("_") or "node"
    if segment in RESERVED or hasattr(nn.Module, segment):
        segment += "_"
    return segment


def dotted(path: str) -> str:
    """A recorded module path with each segment sanitised (``features.0`` stays as it is)."""
    return ".".join(sanitize(segment) for segment in path.split("."))


def parameter_owner(initializer: str | None) -> str | None:
    """The module path in a parameter's qualified name (``layer1.0.conv1.weight`` →
    ``layer1.0.conv1``), or None for a name the exporter made up (``onnx::Conv_63``, ``val_7``):
    those are weights it computed, e.g. a convolution with a BatchNorm folded in."""
    if initializer is None or not QUALIFIED.match(initializer) or "." not in initializer:
        return None
    return initializer.rsplit(".", 1)[0]


def node_path(node: onnx.NodeProto, owner: str | None) -> str | None:
    """The module path a node is named after: its parameters' owner when that path lies at or
    below the recorded one (the legacy exporter records ``/block2/0/BatchNormalization`` for a
    scripted ``block2[0].norm``), else the recorded path (the dynamo optimizer's fused
    Conv+BatchNorm keeps the convolution's weight names but records the BatchNorm's path: it
    computes the BatchNorm's output)."""
    recorded = module_path(node)
    if owner is not None and (not recorded or owner == recorded or owner.startswith(recorded + ".")):
        return owner
    return recorded


def assign_names(nodes: list[onnx.NodeProto], owners: list[str | None],
                 weighted: list[bool]) -> tuple[list[str], set[str]]:
    """One unique dotted name per node, following the module docstring's rules, and the names
    that are a module path of the code itself (rule 2's direct names, not ``<module>.<op>``);
    ``owners``: the module path in each node's first parameter's name (``parameter_owner``)."""
    paths = [node_path(n, owner) for n, owner in zip(nodes, owners)]
    known = {p for p in paths if p}
    per_path = Counter(paths)
    weighted_per_path = Counter(p for p, w in zip(paths, weighted) if w)
    ops_per_path: dict[str | None, set[str]] = {}
    for node, path in zip(nodes, paths):
        ops_per_path.setdefault(path, set()).add(node.op_type)
    raw: list[tuple[str, bool]] = []
    for node, path, has_weights in zip(nodes, paths, weighted):
        op = op_snake(node.op_type)
        if path is None:
            raw.append((sanitize(node.name or op), False))
            continue
        leaf = path != "" and not any(k.startswith(path + ".") for k in known)
        direct = leaf and (per_path[path] == 1 or len(ops_per_path[path]) == 1
                           or (has_weights and weighted_per_path[path] == 1))
        raw.append((dotted(path), True) if direct else ((f"{dotted(path)}.{op}" if path else op), False))
    names: list[str] = []
    used: set[str] = set()
    code_modules: set[str] = set()
    for base, direct in raw:
        name, k = base, 0
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        names.append(name)
        if direct:
            code_modules.add(name)
    return names, code_modules
