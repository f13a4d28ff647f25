"""Guided Grad-CAM (Selvaraju et al. 2017, "Grad-CAM", section 3.1)."""

from __future__ import annotations

import warnings
from typing import ClassVar

import torch
from captum.attr import GuidedBackprop as CaptumGuidedBackprop

from audit.models.classifier import Classifier
from audit.saliency.base import leaf_input, methods
from audit.saliency.grad_cam import LayerMethod
from audit.saliency.layers import require_relu_modules


@methods.register("guided-grad-cam")
class GuidedGradCam(LayerMethod):
    """M(x)_ij = Σ_c GB_cij · upsample_bilinear(Grad-CAM)_ij: guided backprop times Grad-CAM.

    Grad-CAM as in ``grad-cam`` (same layer and default, same upsampling); guided
    backprop as in ``guided-backprop``. The product is captum's ``GuidedGradCam`` with bilinear
    upsampling. Signed, summed over channels. Needs ``nn.ReLU`` modules.
    """

    signed: ClassVar[bool] = True
    label: ClassVar[str] = "guided-grad-cam"

    def prepare(self, model: Classifier) -> None:
        require_relu_modules(model, self.label)
        super().prepare(model)

    def attribute(self, model: Classifier, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.chosen is None:  # called without the pipeline's prepare
            self.prepare(model)
        cam = self.grad_cam(model, x, target)
        with warnings.catch_warnings():  # captum announces its ReLU hooks on every call
            warnings.simplefilter("ignore", UserWarning)
            guided = CaptumGuidedBackprop(model.layered).attribute(leaf_input(x), target=target)
        return (guided.detach().sum(dim=1).float() * cam).detach()
