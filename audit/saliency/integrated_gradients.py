"""Integrated gradients (Sundararajan, Taly & Yan 2017, "Axiomatic attribution for deep
networks")."""

from __future__ import annotations

from typing import ClassVar

import torch
from captum.attr import IntegratedGradients as CaptumIntegratedGradients

from audit.errors import AuditError
from audit.models.classifier import Classifier
from audit.saliency.base import SaliencyMethod, leaf_input, methods
from audit.saliency.reduce import sum_over_channels

#: Path points evaluated per forward/backward pass (bounds memory at N × this many inputs).
STEPS_PER_PASS = 16


def integrated_gradients(
    module: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, n_steps: int
) -> torch.Tensor:
    """(x − x') ⊙ ∫₀¹ ∂y_t/∂x(x' + α(x − x')) dα with x' = 0, by captum's Gauss–Legendre rule."""
    return CaptumIntegratedGradients(module).attribute(
        leaf_input(x),
        baselines=torch.zeros_like(x),
        target=target,
        n_steps=n_steps,
        internal_batch_size=len(x) * STEPS_PER_PASS,
    )


def check_steps(n_steps: int) -> int:
    if n_steps < 1:
        raise AuditError(f"n_steps must be at least 1, got {n_steps}; the paper uses 20 to 300")
    return n_steps


@methods.register("integrated-gradients")
class IntegratedGradients(SaliencyMethod):
    """M(x)_ij = Σ_c IG_cij, IG = x ⊙ ∫₀¹ ∂y_t/∂x(αx) dα (zero baseline): signed, channel sum.

    Options: ``n_steps`` (50) integration points.
    """

    signed: ClassVar[bool] = True
    option_help: ClassVar[dict[str, str]] = {"n_steps": "integration points of the path from the zero baseline "
                                                        "(one forward and backward pass each)"}

    def __init__(self, *, n_steps: int = 50) -> None:
        self.n_steps = check_steps(n_steps)

    def passes(self, shape: tuple[int, int, int]) -> int:
        return self.n_steps

    def attribute(self, model: Classifier, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        attribution = integrated_gradients(model.differentiable, x, target, self.n_steps)
        return sum_over_channels(attribution)
