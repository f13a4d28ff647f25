"""The saliency method interface and its registry (entry-point group ``audit.methods``).

A method is a class registered under its CLI name; it is constructed with its options
(keyword arguments, all with defaults) and called per batch::

    method = methods.get("integrated-gradients")(n_steps=50)
    maps = method.attribute(classifier, x, target)   # (N, H, W) float32 tensor on x's device

``x`` is the normalised (N, C, H, W) input, ``target`` a (N,) int64 tensor of class indices.
Maps are a float32 torch tensor on the input's device (the built-in methods: the metrics then
run there and only per-image numbers come back), or a float32 numpy array (a plugin may compute
on the host, e.g. audit-rise); every consumer accepts both (``audit.metrics.tensors``).
Attributions are taken on the logit of the target class. Maps are reduced over channels by
each method as its docstring says and are at the input's spatial size.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from audit.models.classifier import Classifier
from audit.registry import Registry


class SaliencyMethod(ABC):
    """Base class; subclasses set the class attributes and implement ``attribute``."""

    #: True when the method needs only forward passes (works on a bare onnxruntime session).
    forward_only: ClassVar[bool] = False
    #: True when the method needs a named layer (Grad-CAM and friends).
    needs_layer: ClassVar[bool] = False
    #: True when the method hooks sub-modules (a layer's activations, ReLU backward passes): it
    #: then runs on ``Classifier.layered`` (``network``), the others on ``differentiable``.
    needs_hooks: ClassVar[bool] = False
    #: True when the map is signed (otherwise non-negative).
    signed: ClassVar[bool] = False
    #: One line of meaning per ``__init__`` keyword option (``audit methods``, ``saliency.options``).
    option_help: ClassVar[dict[str, str]] = {}

    #: True when the map is a function of x and the target logit's input gradient alone. The
    #: pipeline then computes that gradient once per batch, in the pass that gives the predictions,
    #: and calls ``from_input_gradient`` instead of ``attribute`` (same numbers, one pass).
    uses_input_gradient: ClassVar[bool] = False

    def from_input_gradient(self, x: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor | np.ndarray:
        """Maps from ``gradient`` = ∂y_t/∂x (N, C, H, W); only for ``uses_input_gradient`` methods."""
        raise NotImplementedError

    def passes(self, shape: tuple[int, int, int]) -> int:
        """Forward (and backward) passes of the model per image of ``shape`` (C, H, W): what a
        map costs against a plain gradient's one (``audit.cost``). Expensive methods override it."""
        return 1

    def prepare(self, model: Classifier) -> None:
        """Check and settle what the method needs of ``model`` (Grad-CAM's layer), so that a bad
        choice fails before any image is processed; the pipeline calls it once per run."""

    def provenance(self) -> dict[str, Any]:
        """What ``prepare`` settled, for ``methods.<m>`` in results.json (Grad-CAM: ``layer``)."""
        return {}

    @abstractmethod
    def attribute(self, model: Classifier, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor | np.ndarray:
        """Return (N, H, W) float32 saliency maps for ``target`` classes: a tensor on x's
        device, or numpy."""


def method_problem(entry: object) -> str | None:
    """Why a plugin's entry point is not a saliency method (None when it is): it must be a
    concrete subclass of ``SaliencyMethod``."""
    if not isinstance(entry, type) or not issubclass(entry, SaliencyMethod):
        return f"{entry!r:.60} is not a subclass of audit.saliency.base.SaliencyMethod"
    if inspect.isabstract(entry):
        return f"{entry.__name__} does not implement {', '.join(sorted(entry.__abstractmethods__))}"
    return None


methods: Registry[type[SaliencyMethod]] = Registry("saliency method", "audit.methods", method_problem)


def network(model: Classifier, method: SaliencyMethod | type[SaliencyMethod]) -> nn.Module:
    """The module ``method`` differentiates: ``model.layered`` for methods that hook
    sub-modules, ``model.differentiable`` for the others."""
    return model.layered if method.needs_hooks else model.differentiable


def leaf_input(x: torch.Tensor) -> torch.Tensor:
    """A detached copy of ``x`` that requires grad: the input gradient methods differentiate."""
    return x.detach().clone().requires_grad_(True)
