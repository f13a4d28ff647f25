"""WILDCAT class maps as saliency (Durand et al. 2017, "WILDCAT: weakly supervised learning of
deep ConvNets for image classification, pointwise localization and segmentation"; Aggarwal et
al. 2020, "Towards trainable saliency maps in medical imaging")."""

from __future__ import annotations

from typing import ClassVar

import torch

from audit.errors import AuditError
from audit.models.classifier import Classifier
from audit.saliency.base import SaliencyMethod, methods
from audit.saliency.grad_cam import upsample


@methods.register("wildcat")
class Wildcat(SaliencyMethod):
    """M(x) = upsample_bilinear(z_t − min_ij z_t), z_t the target's (h, w) class map.

    The model's own class map for the target (``Classifier.class_maps``: the second output of a
    class-map model, as ``audit wildcat`` writes it), read by a forward pass (onnxruntime for
    ONNX), upsampled to the input as Grad-CAM is (``grad_cam.upsample``: bilinear,
    ``align_corners=False``, float64). A class map is signed (the WILDCAT pooling adds α times
    its lowest values: negative evidence); our choice is to shift it by its per-image minimum
    rather than clip it like Grad-CAM's ReLU: the map is then non-negative (the metrics' |g|
    ranks class evidence, not its magnitude), its order of pixels, maximum (pointwise detection)
    and AUPRC are the class map's own, as in Aggarwal et al.'s localisation utility, and no ties
    are made at zero. Under the randomisation check the maps come from the randomised copy.
    """

    forward_only: ClassVar[bool] = True

    def prepare(self, model: Classifier) -> None:
        if model.class_maps is None:
            raise AuditError(f"--method wildcat: {model.path} has no class-map output; build one with `audit wildcat`")

    def attribute(self, model: Classifier, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.prepare(model)
        maps = model.class_maps(x)
        index = target.to(maps.device).reshape(-1, 1, 1, 1).expand(-1, 1, *maps.shape[2:])
        cam = maps.gather(1, index).double()
        return upsample(cam - cam.amin((2, 3), keepdim=True), tuple(x.shape[2:])).to(x.device)
