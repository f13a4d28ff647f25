"""Normalisation for fine-tuning: batch statistics in training, as the reference code trains,
and BatchNorm put back where an exporter folded it away.

Why (measured, ALGORITHMS.md "Notes from measurement"): actdiff has a trivial solution, features
that do not depend on the input (L_act = 0, L_clf = ln K). With BatchNorm normalising each
batch by its own statistics, as the reference code trains its ResNets, the features cannot
shrink to a constant and actdiff fine-tunes a biased model to validation AUC ≈ 1. With
BatchNorm folded into the convolutions (the legacy ONNX exporter's default, and the dynamo
exporter's optimiser) or absent, the same loop collapses to a constant output.

So a model is fine-tuned in train mode (BatchNorm on batch statistics, running statistics
updated with the layer's momentum; dropout active) and, where a convolution's output is not
read by a normalisation layer, a BatchNorm is inserted after it (``with_batch_norm``),
initialised from the data so that the network computes the same function at the start: with
μ_c and σ²_c the per-channel mean and (population) variance of the convolution's output over
the training set,

    running_mean = μ,  running_var = σ²,  γ = √(σ² + ε),  β = μ
    ⇒ eval: γ (x − μ) / √(σ² + ε) + β = x.

``fold`` puts each inserted BatchNorm back into its convolution for export (eval form,
W' = W·s, b' = (b − μ_run)·s + β with s = γ/√(σ²_run + ε)), so the written model has the
operators and layout of the original.

The inserted layers are attached by forward hooks that are bound methods of the layers
themselves, so ``copy.deepcopy`` of the wrapper copies the hooks with their layers.
"""

from __future__ import annotations

import copy
from typing import Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.instancenorm import _InstanceNorm

from audit.errors import AuditError
from audit.models.loader import ImageByImage
from audit.models.onnx_graph.ops.layers import BatchNorm, InstanceNorm, LayerNorm
from audit.models.onnx_graph.ops.shape import Flatten, Reshape, Squeeze, Unsqueeze

NORMALISATIONS = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm, InstanceNorm, LayerNorm)
RESHAPES = (nn.Flatten, nn.Unflatten, Reshape, Flatten, Squeeze, Unsqueeze)


def convolutions(model: nn.Module) -> dict[str, _ConvNd]:
    return {name: m for name, m in model.named_modules() if isinstance(m, _ConvNd) and not m.transposed}


@torch.no_grad()
def unnormalised_convolutions(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of the convolutions whose output no normalisation layer reads, found from one
    forward pass of ``x``: hooks record which tensors each layer produces and reads, following
    the output through layers that only reshape it (GroupNorm exported to ONNX is a Reshape,
    InstanceNormalization and a Reshape back)."""
    produced: dict[int, str] = {}
    normalised: set[str] = set()
    keep: list[torch.Tensor] = []  # holds the outputs so that their ids are not reused
    convs = convolutions(model)
    names = {id(m): name for name, m in convs.items()}

    def on_output(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if id(module) in names:
            origin = names[id(module)]
        elif isinstance(module, RESHAPES) and inputs and id(inputs[0]) in produced:
            origin = produced[id(inputs[0])]
        else:
            return
        produced[id(output)] = origin
        keep.append(output)

    def on_input(module: nn.Module, inputs: tuple) -> None:
        if inputs and id(inputs[0]) in produced:
            normalised.add(produced[id(inputs[0])])

    handles = [m.register_forward_hook(on_output) for m in model.modules() if id(m) in names or isinstance(m, RESHAPES)]
    handles += [m.register_forward_pre_hook(on_input) for m in model.modules() if isinstance(m, NORMALISATIONS)]
    was_training = model.training
    try:
        model.eval()(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    executed = set(produced.values())
    return [name for name in convs if name in executed and name not in normalised]


class InsertedBatchNorm(BatchNorm):
    """A BatchNorm applied to a convolution's output through a forward hook."""

    def after_convolution(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        return self(output)


class WithBatchNorm(nn.Module):
    """``model`` with an ``InsertedBatchNorm`` after each convolution named in ``names``."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model = model
        convs = convolutions(model)
        self.names = list(names)
        self.norms = nn.ModuleDict()
        for i, name in enumerate(self.names):
            norm = InsertedBatchNorm(convs[name].out_channels).to(convs[name].weight.device)
            self.norms[str(i)] = norm
            convs[name].register_forward_hook(norm.after_convolution)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(*inputs)

    @torch.no_grad()
    def initialise(self, batches: Iterable[torch.Tensor]) -> None:
        """Set every inserted layer to the identity of its convolution's output statistics over
        ``batches`` (per channel, accumulated in float64)."""
        convs = convolutions(self.model)
        sums: dict[int, list[torch.Tensor]] = {}

        def record(i: int):
            def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
                values = output.detach().transpose(0, 1).reshape(output.shape[1], -1).double()
                total = sums.setdefault(i, [torch.zeros(output.shape[1], dtype=torch.float64, device=output.device)] * 3)
                sums[i] = [total[0] + values.shape[1], total[1] + values.sum(1), total[2] + (values * values).sum(1)]
            return hook

        handles = [convs[name].register_forward_hook(record(i), prepend=True) for i, name in enumerate(self.names)]
        was_training = self.training
        self.model.eval()
        try:
            for x in batches:
                self.model(x)
        finally:
            for handle in handles:
                handle.remove()
            self.train(was_training)
        for i, norm in enumerate(self.norms.values()):
            count, total, squares = sums[i]
            mean = total / count
            var = (squares / count - mean * mean).clamp_min(0)
            norm.running_mean.copy_(mean)
            norm.running_var.copy_(var)
            norm.weight.copy_(torch.sqrt(var + norm.eps))
            norm.bias.copy_(mean)
            norm.num_batches_tracked.zero_()

    def folded(self) -> nn.Module:
        """A copy of the inner model with every inserted layer folded into its convolution
        (eval form) and no hooks left."""
        model = copy.deepcopy(self.model)
        convs = convolutions(model)
        for name, norm in zip(self.names, self.norms.values()):
            fold_into(convs[name], norm)
        return model


@torch.no_grad()
def fold_into(conv: _ConvNd, norm: _BatchNorm) -> None:
    """conv ← norm(conv) in eval form; removes ``norm``'s hook from ``conv`` if it has one."""
    for key, hook in list(conv._forward_hooks.items()):
        if isinstance(getattr(hook, "__self__", None), InsertedBatchNorm):
            del conv._forward_hooks[key]
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
    conv.weight.copy_(conv.weight * scale.reshape(-1, *([1] * (conv.weight.dim() - 1))))
    new_bias = (bias - norm.running_mean) * scale + norm.bias
    if conv.bias is None:
        conv.bias = nn.Parameter(new_bias.detach().clone())
    else:
        conv.bias.copy_(new_bias)


@torch.no_grad()
def batched(model: nn.Module, example: torch.Tensor, source: str = "the model") -> nn.Module:
    """The model as it runs a whole batch at once. A graph exported for a fixed batch of one
    runs image by image (``ImageByImage``), where BatchNorm in train mode would normalise each
    image by its own statistics; its twin often takes a batch all the same (the batch size is
    only declared), and then trains unwrapped. AuditError when it cannot."""
    if not isinstance(model, ImageByImage):
        return model
    x = example[:3]
    try:
        together = model.model.eval()(x)
        agrees = together.shape == (len(x), *together.shape[1:]) and torch.allclose(together, model.eval()(x), atol=1e-4, rtol=1e-4)
    except Exception:  # noqa: BLE001 (a graph with the batch baked into its shapes fails in many ways)
        agrees = False
    if not agrees:
        raise AuditError(f"{source}: the graph is fixed at a batch of one and cannot take a batch, but fine-tuning "
                         f"needs batch statistics; re-export the model with a dynamic batch dimension")
    return model.model


def trainable(model: nn.Module, example: torch.Tensor, batches: Iterable[torch.Tensor], source: str = "the model") -> nn.Module:
    """``model`` ready for fine-tuning: run as one batch (``batched``), and wrapped in
    ``WithBatchNorm`` (data-initialised from ``batches``) when some convolution lacks
    normalisation."""
    model = batched(model, example, source)
    names = unnormalised_convolutions(model, example)
    if not names:
        return model
    wrapped = WithBatchNorm(model, names)
    wrapped.initialise(batches)
    return wrapped


def exportable(model: nn.Module) -> nn.Module:
    """The model to write back: inserted layers folded, eval mode."""
    return (model.folded() if isinstance(model, WithBatchNorm) else model).eval()


def inner(model: nn.Module) -> nn.Module:
    """The model itself, inside a ``WithBatchNorm`` wrapper or not (its layers keep their names)."""
    return model.model if isinstance(model, WithBatchNorm) else model
