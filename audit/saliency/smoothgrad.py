"""SmoothGrad (Smilkov, Thorat, Kim, Viégas & Wattenberg 2017, "SmoothGrad: removing noise by
adding noise")."""

from __future__ import annotations

from typing import ClassVar

import torch
from captum.attr import Saliency

from audit.models.classifier import Classifier
from audit.saliency.base import SaliencyMethod, leaf_input, methods
from audit.saliency.noise import NOISE_OPTIONS, check_noise_options, smooth
from audit.saliency.reduce import max_abs_over_channels


@methods.register("smoothgrad")
class SmoothGrad(SaliencyMethod):
    """M(x)_ij = max_c |(1/n) Σ_k ∂y_t/∂x_cij(x + ε_k)|, ε_k ~ N(0, σ²), σ = noise_level · range(x).

    Signed gradients are averaged, then the absolute value is taken and reduced by max over
    channels, as for ``gradient``. Options: ``samples`` (50), ``noise_level`` (0.15, the
    fraction of the image's value range used as σ), ``seed`` (0).
    """

    option_help: ClassVar[dict[str, str]] = NOISE_OPTIONS

    def passes(self, shape: tuple[int, int, int]) -> int:
        return self.samples

    def __init__(self, *, samples: int = 50, noise_level: float = 0.15, seed: int = 0) -> None:
        check_noise_options(samples, noise_level)
        self.samples, self.noise_level, self.seed = samples, noise_level, seed

    def attribute(self, model: Classifier, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        saliency = Saliency(model.differentiable)
        mean_gradient = smooth(
            lambda noisy: saliency.attribute(leaf_input(noisy), target=target, abs=False),
            x,
            samples=self.samples,
            noise_level=self.noise_level,
            seed=self.seed,
        )
        return max_abs_over_channels(mean_gradient)
