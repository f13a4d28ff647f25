"""Readable, stable module names for the twin's layers.

1. Module path recorded by the exporter, if any:
   - dynamo exporter: node metadata ``pkg.torch.onnx.name_scopes``, e.g.
     ``['', 'layer1', 'layer1.0', 'layer1.0.conv1', 'conv2d']`` → ``layer1.0.conv1`` (the
     element before the op), or else the ``namespace`` metadata
     (``': Net/layer1: Sequential/layer1.0: Block/…'``);
   - legacy (TorchScript) exporter: node name ``/layer1/layer1.0/conv1/Conv`` → scopes
     ``layer1``, ``layer1.0``, ``conv1`` joined into ``layer1.0.conv1`` (a scope that already
     starts with the path so far replaces it).
2. A leaf path (no other node's path lies below it) names its node directly when that node is
   the only one with this path, the only one holding weights, or all of the path's nodes
   have its op type (a module called several times: ``relu``, ``relu_1``); other nodes get
   ``<path>.<op>`` (``layer1.0.add``) or, at the root, just ``<op>`` (``flatten``), with the
   op type in snake case.
   A Conv into which the dynamo exporter's optimizer fused a BatchNorm carries the BatchNorm's
   path (``layer1.0.bn1``): that is all the exporter keeps.
3. Without a recorded path: the ONNX node name, else the op type.
4. Sanitised into an attribute name: every character outside ``[A-Za-z0-9_]`` becomes ``_``
   (``layer1.0.conv1`` → ``layer1_0_conv1``); a leading digit gets an ``n_`` prefix; names that
   clash with ``nn.Module`` attributes (``forward``, ``training``…) or the twin's own
   (``constants``) get a trailing ``_``; repeats get ``_1``, ``_2``… in graph order.
"""

from __future__ import annotations

import ast
import re
from collections import Counter

import onnx
from torch import nn

from audit.models.onnx_graph.ops.base import op_snake

RESERVED = {"constants"}
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
        path = ""
        for scope in node.name.split("/")[1:-1]:
            if path and not scope.startswith(path + "."):
                path = f"{path}.{scope}"
            else:
                path = scope
        return path
    return None


def sanitize(name: str) -> str:
    name = re.sub(r"\W", "_", name, flags=re.ASCII).strip("_") or "node"
    if name[0].isdigit():
        name = "n_" + name
    if name in RESERVED or hasattr(nn.Module, name):
        name += "_"
    return name


def assign_names(nodes: list[onnx.NodeProto], weighted: list[bool]) -> list[str]:
    """One unique attribute name per node, following the module docstring's rules."""
    paths = [module_path(n) for n in nodes]
    known = {p for p in paths if p}
    per_path = Counter(paths)
    weighted_per_path = Counter(p for p, w in zip(paths, weighted) if w)
    ops_per_path: dict[str | None, set[str]] = {}
    for node, path in zip(nodes, paths):
        ops_per_path.setdefault(path, set()).add(node.op_type)
    raw = []
    for node, path, has_weights in zip(nodes, paths, weighted):
        op = op_snake(node.op_type)
        if path is None:
            raw.append(node.name or op)
            continue
        leaf = path != "" and not any(k.startswith(path + ".") for k in known)
        direct = leaf and (per_path[path] == 1 or len(ops_per_path[path]) == 1
                           or (has_weights and weighted_per_path[path] == 1))
        raw.append(path if direct else (f"{path}.{op}" if path else op))
    names: list[str] = []
    used: set[str] = set()
    for r in raw:
        base = sanitize(r)
        name, k = base, 0
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        names.append(name)
    return names
