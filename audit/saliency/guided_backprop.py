"""Guided backpropagation (Springenberg, Dosovitskiy, Brox & Riedmiller 2015, "Striving for
simplicity: the all convolutional net")."""

from __future__ import annotations

import warnings
from typing import ClassVar

import torch
from captum.attr import GuidedBackprop as CaptumGuidedBackprop

from audit.models.classifier import Classifier
from audit.saliency.base import SaliencyMethod, leaf_input, methods
from audit.saliency.layers import require_relu_modules
from audit.saliency.reduce import sum_over_channels


@methods.register("guided-backprop")
class GuidedBackprop(SaliencyMethod):
    """M(x)_ij = Σ_c G_cij, G = ∂y_t/∂x with every ReLU's backward pass replaced by
    g ↦ max(g, 0) · 1[input > 0]: signed, summed over channels. Needs ``nn.ReLU`` modules."""

    signed: ClassVar[bool] = True
    needs_hooks: ClassVar[bool] = True

    def attribute(self, model: Classifier, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        require_relu_modules(model, "guided-backprop")
        with warnings.catch_warnings():  # captum announces its ReLU hooks on every call
            warnings.simplefilter("ignore", UserWarning)
            attribution = CaptumGuidedBackprop(model.layered).attribute(
                leaf_input(x), target=target
            )
        return sum_over_channels(attribution)
