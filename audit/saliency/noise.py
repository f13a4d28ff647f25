"""Seeded SmoothGrad averaging (Smilkov et al. 2017, "SmoothGrad: removing noise by adding
noise")."""

from __future__ import annotations

from typing import Callable

import torch

from audit.errors import AuditError


#: ``option_help`` of the smoothgrad methods
NOISE_OPTIONS = {"samples": "noisy copies averaged per image (one pass each)",
                 "noise_level": "σ of the Gaussian noise as a fraction of the image's value range",
                 "seed": "seed of the noise"}


def check_noise_options(samples: int, noise_level: float) -> None:
    if samples < 1:
        raise AuditError(f"samples must be at least 1, got {samples}; the paper uses 50")
    if noise_level < 0:
        raise AuditError(
            f"noise_level must be ≥ 0, got {noise_level}; the paper uses 0.10 to 0.20"
        )


def smooth(
    attribute: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    samples: int,
    noise_level: float,
    seed: int,
) -> torch.Tensor:
    """(1/n) Σ_k attribute(x + ε_k), ε_k ~ N(0, σ²), σ = noise_level · (max x − min x) per image.

    The noise is drawn from a ``torch.Generator`` seeded with ``seed`` (the global RNG is left
    alone). Every image in the batch gets the same standard-normal draws z_k, scaled by its own
    σ, so a map does not depend on the batch it was computed in. For one image whose C·H·W is a
    multiple of 16 the draws equal those of captum's ``NoiseTunnel`` after ``torch.manual_seed``
    (torch fills normals in blocks of 16), which the tests use to compare the two.
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    flat = x.detach().flatten(1)
    value_range = flat.amax(dim=1) - flat.amin(dim=1)
    sigma = (noise_level * value_range).view(-1, *([1] * (x.dim() - 1)))
    total = None
    for _ in range(samples):
        z = torch.randn(x.shape[1:], generator=generator).to(x.device)
        attribution = attribute(x.detach() + sigma * z).detach()
        total = attribution if total is None else total + attribution
    return total / samples
