"""Vanilla gradient saliency (Simonyan, Vedaldi & Zisserman 2014, "Deep inside convolutional
networks: visualising image classification models and saliency maps")."""

from __future__ import annotations

from typing import ClassVar

import torch
from captum.attr import Saliency

from audit.models.classifier import Classifier
from audit.saliency.base import SaliencyMethod, leaf_input, methods
from audit.saliency.reduce import max_abs_over_channels


@methods.register("gradient")
class Gradient(SaliencyMethod):
    """M(x)_ij = max_c |∂y_t/∂x_cij|: absolute gradient of the target logit, max over channels."""

    uses_input_gradient: ClassVar[bool] = True

    def from_input_gradient(self, x: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        return max_abs_over_channels(gradient)

    def attribute(self, model: Classifier, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        gradient = Saliency(model.differentiable).attribute(
            leaf_input(x), target=target, abs=True
        )
        return max_abs_over_channels(gradient)
