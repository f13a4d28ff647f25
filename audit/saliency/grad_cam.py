"""Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: visual explanations from deep networks via
gradient-based localization")."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from captum.attr import LayerAttribution, LayerGradCam

from audit.errors import AuditError
from audit.models.classifier import Classifier
from audit.saliency.base import SaliencyMethod, leaf_input, methods
from audit.saliency.layers import find_layer
from audit.saliency.reduce import single_channel


def grad_cam(
    model: Classifier,
    layer: torch.nn.Module,
    layer_name: str,
    x: torch.Tensor,
    target: torch.Tensor,
) -> torch.Tensor:
    """ReLU(Σ_k α_k A^k), α_k = mean_ij ∂y_t/∂A^k_ij, upsampled bilinearly to x: (N, 1, H, W)."""
    cam = LayerGradCam(model.differentiable, layer).attribute(
        leaf_input(x), target=target, relu_attributions=True
    )
    if cam.dim() != 4:
        raise AuditError(
            f"grad-cam: layer {layer_name!r} of model {model.path} gives a {cam.dim()}-D output; "
            f"choose a convolutional layer with (N, C, H, W) activations"
        )
    return LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="bilinear")


@methods.register("grad-cam")
class GradCam(SaliencyMethod):
    """M(x) = upsample_bilinear(ReLU(Σ_k α_k A^k)), α_k = (1/Z) Σ_ij ∂y_t/∂A^k_ij.

    A is the activation of ``layer`` (default: the last ``nn.Conv2d`` of the model); the sum
    over the layer's channels is the method's own reduction. Non-negative.
    """

    needs_layer: ClassVar[bool] = True

    def __init__(self, *, layer: str | None = None) -> None:
        self.layer = layer

    def attribute(self, model: Classifier, x: torch.Tensor, target: torch.Tensor) -> np.ndarray:
        layer = find_layer(model, self.layer, "grad-cam")
        layer_name = "last conv" if self.layer is None else str(self.layer)
        return single_channel(grad_cam(model, layer, layer_name, x, target))
