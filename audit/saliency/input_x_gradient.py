"""Gradient ⊙ input (Shrikumar et al. 2016, "Not just a black box"; Ancona et al. 2018)."""

from __future__ import annotations

from typing import ClassVar

import torch
from captum.attr import InputXGradient as CaptumInputXGradient

from audit.models.classifier import Classifier
from audit.saliency.base import SaliencyMethod, leaf_input, methods
from audit.saliency.reduce import sum_over_channels


@methods.register("input-x-gradient")
class InputXGradient(SaliencyMethod):
    """M(x)_ij = Σ_c x_cij · ∂y_t/∂x_cij: signed, summed over channels."""

    signed: ClassVar[bool] = True
    uses_input_gradient: ClassVar[bool] = True

    def from_input_gradient(self, x: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        return sum_over_channels(x * gradient)

    def attribute(self, model: Classifier, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        attribution = CaptumInputXGradient(model.differentiable).attribute(
            leaf_input(x), target=target
        )
        return sum_over_channels(attribution)
