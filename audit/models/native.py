"""The torch formats' own modules as the differentiable model: no exporter in between.

torch.export (``.pt2``): ``torch.export.unflatten`` of the (safely loaded) program gives back
the module tree with the original module paths (``layer1.0.conv1``); every sub-module is an
``InterpreterModule`` that runs its part of the program's graph, so gradients flow and forward
hooks fire. Two things are done to it (``native_program_module``):

- leaves restored: a sub-module whose graph is exactly one ``aten.conv{1,2,3}d``,
  ``aten.linear`` or ``aten.batch_norm`` call on its own parameters becomes the ``torch.nn``
  layer that call came from (same parameters, same arithmetic), so that
  ``reset_parameters`` (randomisation), ``isinstance`` checks (fine-tuning's BatchNorm
  insertion) and train mode work as on the user's module. The exported graph hard-codes
  BatchNorm's eval form (``training=False``); the restored ``nn.BatchNorm`` normalises by
  batch statistics in train mode, as fine-tuning needs (``audit.finetune.normalisation``).
- node metadata dropped (``val``, ``example_value``, ``tensor_meta``): they hold fake tensors
  with symbolic sizes, which ``copy.deepcopy`` cannot copy.

TorchScript: the loaded ``ScriptModule`` is differentiable and its parameters can be
re-initialised in place, but it refuses forward hooks. ``script_execution_order`` gives the
order in which its parameterised sub-modules run, from the TorchScript graph instead of hooks.
"""

from __future__ import annotations

import torch
from torch import fx, nn
from torch.export.unflatten import UnflattenedModule

from audit.errors import AuditError, first_line

META_KEYS = ("val", "example_value", "tensor_meta")
CONVOLUTIONS = {torch.ops.aten.conv1d.default: nn.Conv1d, torch.ops.aten.conv2d.default: nn.Conv2d,
                torch.ops.aten.conv3d.default: nn.Conv3d}
BATCH_NORMS = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}


def is_unflattened(module: nn.Module) -> bool:
    return isinstance(module, UnflattenedModule)


def native_program_module(program: torch.export.ExportedProgram, source: str) -> nn.Module:
    """The program's module tree with its original names, leaves restored, deep-copyable."""
    try:
        module = torch.export.unflatten(program)
    except Exception as exc:
        raise AuditError(f"{source}: cannot rebuild the module tree of the torch.export program "
                         f"({first_line(exc)}); re-save it with torch.export.save") from exc
    _restore_leaves(module)
    for sub in module.modules():
        graph = getattr(sub, "graph", None)
        if isinstance(graph, fx.Graph):
            for node in graph.nodes:
                for key in META_KEYS:
                    node.meta.pop(key, None)
    return module.eval()  # the program is the eval form; train() switches restored BatchNorm to batch statistics


def _restore_leaves(root: nn.Module) -> None:
    named = dict(root.named_modules())
    for name, module in named.items():
        if not name or not isinstance(getattr(module, "graph", None), fx.Graph):
            continue
        leaf = _leaf(module)
        if leaf is not None:
            parent, _, child = name.rpartition(".")
            setattr(named[parent] if parent else root, child, leaf)


def _leaf(module: nn.Module) -> nn.Module | None:
    """The ``torch.nn`` layer equivalent to ``module``'s graph, or None."""
    nodes = list(module.graph.nodes)
    inputs = [n for n in nodes if n.op == "placeholder"]
    calls = [n for n in nodes if n.op not in ("placeholder", "get_attr", "output")]
    if len(inputs) != 1 or len(calls) != 1 or nodes[-1].args[0] is not calls[0] or calls[0].kwargs:
        return None
    call, x = calls[0], inputs[0]
    if not call.args or call.args[0] is not x:
        return None
    args = [getattr(module, a.target) if isinstance(a, fx.Node) and a.op == "get_attr" else a for a in call.args]
    if any(isinstance(a, fx.Node) for a in args[1:]):
        return None

    def arg(i: int, default):
        return args[i] if len(args) > i else default

    weight, bias = arg(1, None), arg(2, None)
    if call.target in CONVOLUTIONS:
        groups = arg(6, 1)
        layer = CONVOLUTIONS[call.target](weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]),
                                          stride=arg(3, 1), padding=arg(4, 0), dilation=arg(5, 1), groups=groups,
                                          bias=bias is not None)
    elif call.target == torch.ops.aten.linear.default:
        layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    elif call.target == torch.ops.aten.batch_norm.default and len(args) == 9:
        _, _, _, mean, var, _, momentum, eps, _ = args
        value = x.meta.get("val")
        kind = BATCH_NORMS.get(value.dim() if isinstance(value, torch.Tensor) else 4)
        if kind is None or not isinstance(mean, torch.Tensor) or not isinstance(var, torch.Tensor):
            return None
        layer = kind(mean.shape[0], eps=eps, momentum=momentum, affine=weight is not None)
        layer.running_mean, layer.running_var = mean, var
        if isinstance(getattr(module, "num_batches_tracked", None), torch.Tensor):
            layer.num_batches_tracked = module.num_batches_tracked
    else:
        return None
    if not isinstance(weight, nn.Parameter) or not (bias is None or isinstance(bias, nn.Parameter)):
        return None
    layer.weight, layer.bias = weight, bias
    return layer


class Tap(nn.Identity):
    """A module inserted into an unflattened program's graph after a function call, so that
    hooks can read its value (``tap``)."""


def tap(owner: nn.Module, node: fx.Node) -> str:
    """Route the value of ``node`` (a function call in ``owner``'s graph, e.g. the ``F.relu``
    a torchvision DenseNet applies to its features before pooling) through a new ``Tap`` child
    of ``owner``, named after the op as the ONNX twin names such a node (``relu``, ``relu_1``…);
    returns the child's name. The values computed are unchanged."""
    base = getattr(node.target, "_opname", None) or node.name
    name, k = base, 0
    while hasattr(owner, name):
        k += 1
        name = f"{base}_{k}"
    owner.add_module(name, Tap())
    with owner.graph.inserting_after(node):
        tapped = owner.graph.create_node("call_module", name, (node,))  # call_module() asks graph_module
    node.replace_all_uses_with(tapped, delete_user_cb=lambda user: user is not tapped)
    owner.finalize()  # regenerate the code the InterpreterModule runs
    return name


def script_execution_order(module: torch.jit.ScriptModule) -> list[str]:
    """Names (as in ``named_modules()``) of the sub-modules whose own tensors (parameters,
    buffers) the TorchScript graph reads, in the order of each one's first read: the
    ``inlined_graph`` (nested blocks of ``prim::If``/``prim::Loop`` included, in program order)
    is walked and every ``prim::GetAttr`` chain from ``self`` resolved to a module path. A
    layer's weights are read where it runs (sub-module handles are read up front, but they are
    not tensors), so this is the forward execution order of the layers, each at its first use."""
    graph = module.inlined_graph
    paths = {next(graph.inputs()).unique(): ""}
    order: list[str] = []

    def walk(block) -> None:
        for node in block.nodes():
            if node.kind() == "prim::GetAttr":
                owner = paths.get(node.input().unique())
                if owner is not None:
                    name = node.s("name")
                    if isinstance(node.output().type(), torch._C.TensorType):
                        if owner and owner not in order:
                            order.append(owner)
                    else:
                        paths[node.output().unique()] = f"{owner}.{name}" if owner else name
            for inner in node.blocks():
                walk(inner)

    walk(graph)
    return order
