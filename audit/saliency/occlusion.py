"""Occlusion (Zeiler & Fergus 2014, "Visualizing and understanding convolutional networks")."""

from __future__ import annotations

from typing import ClassVar

import torch
from captum.attr import Occlusion as CaptumOcclusion

from audit.errors import AuditError
from audit.models.classifier import Classifier
from audit.saliency.base import SaliencyMethod, methods
from audit.saliency.reduce import sum_over_channels


def _pixels(fraction: float, side: int) -> int:
    return max(1, min(side, round(fraction * side)))


@methods.register("occlusion")
class Occlusion(SaliencyMethod):
    """M(x)_ij = Σ_c mean over windows W ∋ (i, j) of y_t(x) − y_t(x with W set to ``baseline``).

    Windows cover all channels and are ``window`` × the image side (default 1/8), moved by
    ``stride`` × the side (default 1/16), both rounded to whole pixels (at least 1). Captum's
    per-channel output is summed over channels, so a map is C × the mean logit drop. ``baseline``
    (0.0) is the fill value in the normalised input space (0 = the normalisation mean).
    Forward-only: runs on ``model.logits`` (onnxruntime for ONNX models), with
    ``perturbations_per_eval`` (16) occluded copies of each image per forward pass.
    """

    forward_only: ClassVar[bool] = True
    #: Occluding a window can raise the target logit, so maps have both signs.
    signed: ClassVar[bool] = True
    option_help: ClassVar[dict[str, str]] = {
        "window": "side of the occluded square as a fraction of the image side, in (0, 1]",
        "stride": "step between windows as a fraction of the image side, in (0, 1]",
        "baseline": "value of occluded pixels in the normalised input (0 = the normalisation mean)",
        "perturbations_per_eval": "occluded copies per forward pass (memory against speed)"}

    def __init__(
        self,
        *,
        window: float = 1 / 8,
        stride: float = 1 / 16,
        baseline: float = 0.0,
        perturbations_per_eval: int = 16,
    ) -> None:
        for name, value in (("window", window), ("stride", stride)):
            if not 0 < value <= 1:
                raise AuditError(
                    f"occlusion {name} must be a fraction of the image side in (0, 1], got {value}"
                )
        if perturbations_per_eval < 1:
            raise AuditError(
                f"perturbations_per_eval must be at least 1, got {perturbations_per_eval}"
            )
        self.window, self.stride, self.baseline = window, stride, baseline
        self.perturbations_per_eval = perturbations_per_eval

    def passes(self, shape: tuple[int, int, int]) -> int:
        """One forward pass per window position (captum's sliding windows), plus the original."""
        (_, wh, ww), (_, sh, sw) = self.window_and_stride(torch.Size((1, *shape)))
        return ((shape[1] - wh) // sh + 1) * ((shape[2] - ww) // sw + 1) + 1

    def window_and_stride(
        self, shape: torch.Size
    ) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """Captum's sliding-window and stride shapes, (C, h, w), for an (N, C, H, W) input."""
        channels, height, width = shape[1:]
        window = (channels, _pixels(self.window, height), _pixels(self.window, width))
        stride = (channels, _pixels(self.stride, height), _pixels(self.stride, width))
        return window, stride

    def attribute(self, model: Classifier, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        window, stride = self.window_and_stride(x.shape)
        with torch.no_grad():
            attribution = CaptumOcclusion(model.logits).attribute(
                x.detach(),
                sliding_window_shapes=window,
                strides=stride,
                baselines=self.baseline,
                target=target,
                perturbations_per_eval=self.perturbations_per_eval,
            )
        return sum_over_channels(attribution)
