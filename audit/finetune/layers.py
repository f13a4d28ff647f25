"""Which activations actdiff compares, and how they are read during a forward pass.

Default (``features``): the pooled feature vector before the classifier, i.e. the input of the
model's last ``nn.Linear`` (ONNX Gemm/MatMul in the twin) — the reference code's best
configurations used only this layer (Viviano et al. 2019; ALGORITHMS.md). ``--layers`` names
other sub-modules of the hookable model (``Classifier.layered``). Pre-activation
where the graph allows: naming an activation (ReLU…) reads its input; naming a layer whose
output feeds only a BatchNorm reads the BatchNorm's output, i.e. what the next activation sees
(paper, Appendix: "activations for actdiff were saved before applying the ReLU").
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from audit.errors import AuditError
from audit.models.layer_names import inner_model, named_layers, unknown_layer_hint

FEATURES = "features"
ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.CELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Hardswish)


def _leaves(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in named_layers(model).items() if not list(m.children())}


def valid_layer_names(model: nn.Module) -> list[str]:
    """``features`` and every leaf sub-module's name, in graph order."""
    return [FEATURES, *(name for name, m in _leaves(model).items() if m.__class__.__name__ != "_Constants")]


def _only_consumer(model: nn.Module, name: str) -> str | None:
    """For an ONNX twin: the one module that reads ``name``'s output, if exactly one does."""
    plan = getattr(inner_model(model), "_plan", None)
    if plan is None:
        return None
    outputs = next((outs for n, _, outs in plan if n == name), [])
    readers = [n for n, ins, _ in plan if set(ins) & set(outputs)]
    return readers[0] if len(readers) == 1 else None


def resolve_layers(model: nn.Module, names: list[str]) -> list[tuple[str, nn.Module, str]]:
    """(name, module, "input" | "output") to read for each requested layer name."""
    leaves = _leaves(model)
    linears = [(n, m) for n, m in leaves.items() if isinstance(m, nn.Linear)]
    resolved = []
    for name in names:
        if name == FEATURES:
            if not linears:
                raise AuditError("actdiff layer 'features': the model has no final Linear/Gemm layer; "
                                 f"name layers with --layers (valid: {', '.join(valid_layer_names(model)[1:])})")
            resolved.append((FEATURES, linears[-1][1], "input"))
        elif name not in leaves or leaves[name].__class__.__name__ == "_Constants":
            raise AuditError(f"--layers {name!r}: no such layer; {unknown_layer_hint(model, name, valid_layer_names(model))}")
        elif isinstance(leaves[name], ACTIVATIONS):
            resolved.append((name, leaves[name], "input"))
        else:
            consumer = _only_consumer(model, name)
            if consumer is not None and isinstance(leaves.get(consumer), nn.modules.batchnorm._BatchNorm):
                resolved.append((name, leaves[consumer], "output"))
            else:
                resolved.append((name, leaves[name], "output"))
    return resolved


class LayerTaps:
    """Records the chosen layers' activations during forward passes inside ``recording()``.

    ``taken()`` returns one (N, ...) tensor per layer, concatenated over the calls of a module
    (a model traced for a batch of one runs image by image, so its hooks fire per image).
    """

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        self.layers = resolve_layers(model, names)
        self._seen: list[list[torch.Tensor]] = [[] for _ in self.layers]

    @contextmanager
    def recording(self) -> Iterator[LayerTaps]:
        handles = []
        for seen, (_, module, where) in zip(self._seen, self.layers):
            if where == "input":
                handles.append(module.register_forward_pre_hook(lambda m, args, seen=seen: seen.append(args[0])))
            else:
                handles.append(module.register_forward_hook(lambda m, args, out, seen=seen: seen.append(out)))
        for seen in self._seen:
            seen.clear()
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def taken(self) -> list[torch.Tensor]:
        return [torch.cat(seen) if len(seen) > 1 else seen[0] for seen in self._seen]
