"""Guided Grad-CAM (Selvaraju et al. 2017, "Grad-CAM", section 3.1)."""

from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np
import torch
from captum.attr import GuidedGradCam as CaptumGuidedGradCam

from audit.errors import AuditError
from audit.models.classifier import Classifier
from audit.saliency.base import SaliencyMethod, leaf_input, methods
from audit.saliency.layers import find_layer, require_relu_modules
from audit.saliency.reduce import sum_over_channels


@methods.register("guided-grad-cam")
class GuidedGradCam(SaliencyMethod):
    """M(x)_ij = Σ_c GB_cij · upsample_bilinear(Grad-CAM)_ij: guided backprop times Grad-CAM.

    Grad-CAM as in ``grad-cam`` (ReLU on, bilinear upsampling, same ``layer`` option, default
    the last ``nn.Conv2d``); guided backprop as in ``guided-backprop``. Signed, summed over
    channels. Needs ``nn.ReLU`` modules.
    """

    needs_layer: ClassVar[bool] = True
    signed: ClassVar[bool] = True

    def __init__(self, *, layer: str | None = None) -> None:
        self.layer = layer

    def attribute(self, model: Classifier, x: torch.Tensor, target: torch.Tensor) -> np.ndarray:
        layer = find_layer(model, self.layer, "guided-grad-cam")
        require_relu_modules(model, "guided-grad-cam")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            attribution = CaptumGuidedGradCam(model.differentiable, layer).attribute(
                leaf_input(x), target=target, interpolate_mode="bilinear"
            )
        if attribution.shape != x.shape:
            layer_name = "last conv" if self.layer is None else str(self.layer)
            raise AuditError(
                f"guided-grad-cam: layer {layer_name!r} of model {model.path} "
                f"cannot be upsampled to the input; choose a convolutional layer"
            )
        return sum_over_channels(attribution)
