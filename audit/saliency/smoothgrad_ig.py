"""SmoothGrad over integrated gradients ("SIG": Smilkov et al. 2017 on Sundararajan et al. 2017)."""

from __future__ import annotations

from typing import ClassVar

import torch

from audit.models.classifier import Classifier
from audit.saliency.base import SaliencyMethod, methods
from audit.saliency.integrated_gradients import check_steps, integrated_gradients
from audit.saliency.noise import NOISE_OPTIONS, check_noise_options, smooth
from audit.saliency.reduce import max_abs_over_channels


@methods.register("smoothgrad-ig")
class SmoothGradIG(SaliencyMethod):
    """M(x)_ij = max_c |(1/n) Σ_k IG_cij(x + ε_k)|, IG with zero baseline, ε_k as in ``smoothgrad``.

    Reduced like the other smoothgrad variant: max of |·| over channels (unsigned). Options:
    ``samples`` (50), ``noise_level`` (0.15), ``seed`` (0), ``n_steps`` (50); the cost is
    samples × n_steps forward/backward passes per image.
    """

    option_help: ClassVar[dict[str, str]] = {
        **NOISE_OPTIONS, "n_steps": "integration points per noisy copy (samples × n_steps passes per image)"}

    def __init__(
        self, *, samples: int = 50, noise_level: float = 0.15, seed: int = 0, n_steps: int = 50
    ) -> None:
        check_noise_options(samples, noise_level)
        self.samples, self.noise_level, self.seed = samples, noise_level, seed
        self.n_steps = check_steps(n_steps)

    def passes(self, shape: tuple[int, int, int]) -> int:
        return self.samples * self.n_steps

    def attribute(self, model: Classifier, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        module = model.differentiable
        mean_ig = smooth(
            lambda noisy: integrated_gradients(module, noisy, target, self.n_steps),
            x,
            samples=self.samples,
            noise_level=self.noise_level,
            seed=self.seed,
        )
        return max_abs_over_channels(mean_ig)
