"""Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: visual explanations from deep networks via
gradient-based localization")."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from captum.attr import LayerAttribution, LayerGradCam

from audit.models.classifier import Classifier
from audit.saliency.base import SaliencyMethod, leaf_input, methods
from audit.saliency.layers import FeatureLayer, feature_layer, layer_module


class LayerMethod(SaliencyMethod):
    """A method that reads the activations of one layer, the option ``layer`` (default: the
    input of the global pooling that feeds the classifier head, see ``layers.feature_layer``).

    ``prepare`` settles the layer once per run (checking a named one); the maps of a model with
    re-initialised weights (the randomisation check) are taken at the layer of the same name.
    """

    needs_layer: ClassVar[bool] = True
    #: The method's CLI name, for messages.
    label: ClassVar[str]

    def __init__(self, *, layer: str | None = None) -> None:
        self.layer = layer
        self.chosen: FeatureLayer | None = None

    def prepare(self, model: Classifier) -> None:
        self.chosen = feature_layer(model, self.layer, self.label)

    def provenance(self) -> dict[str, Any]:
        return {"layer": self.chosen.to_json()} if self.chosen is not None else {}

    def layer_module(self, model: Classifier) -> torch.nn.Module:
        if self.chosen is None:
            self.prepare(model)
        return layer_module(model, self.chosen.name, self.label)

    def grad_cam(self, model: Classifier, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(N, H, W) float32: ReLU(Σ_k α_k A^k), α_k = mean_ij ∂y_t/∂A^k_ij, upsampled to x."""
        cam = LayerGradCam(model.differentiable, self.layer_module(model)).attribute(
            leaf_input(x), target=target, relu_attributions=True
        )
        upsampled = LayerAttribution.interpolate(cam.detach(), tuple(x.shape[2:]), interpolate_mode="bilinear")
        return upsampled[:, 0]


@methods.register("grad-cam")
class GradCam(LayerMethod):
    """M(x) = upsample_bilinear(ReLU(Σ_k α_k A^k)), α_k = (1/Z) Σ_ij ∂y_t/∂A^k_ij.

    A is the activation of the layer (``LayerMethod``); the sum over the layer's channels is the
    method's own reduction. Non-negative.
    """

    label: ClassVar[str] = "grad-cam"

    def attribute(self, model: Classifier, x: torch.Tensor, target: torch.Tensor) -> np.ndarray:
        return self.grad_cam(model, x, target).numpy()
