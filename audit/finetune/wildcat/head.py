"""The WILDCAT head (Durand et al. 2017, CVPR; as used by Aggarwal et al. 2020, MIDL).

On a feature map F (N, C, h, w), for K classes and M maps per class:

1. multi-map transfer layer: a 1×1 convolution to M·K maps, z = W * F + b, (N, K·M, h, w);
   channel k·M + m is map m of class k (class-major, as the reference code's ``view``);
2. class-wise pooling: the class map is the mean of its M maps,
   z̄_k = (1/M) Σ_m z_{k,m}, (N, K, h, w);
3. spatial pooling: with z̄_k's h·w values sorted, the score is

       s_k = (1/k⁺) Σ_{i ≤ k⁺} top_i(z̄_k) + α · (1/k⁻) Σ_{i ≤ k⁻} bottom_i(z̄_k)

   the mean of the k⁺ highest values plus α times the mean of the k⁻ lowest (Durand et al.,
   eq. 2). k⁻ = 0 or α = 0 drops the second term (α = 0 keeps the maxima only). The scores
   s (N, K) are the logits; z̄ are the class maps.

Counts (our rounding): k ≥ 1 is a number of regions (an integer); k in (0, 1) is a fraction of
the h·w regions, rounded half up, at least one: k = max(1, ⌊k·h·w + ½⌋). A count larger than
h·w is refused (the reference code clips it silently). The reference code (wildcat.pytorch,
``WildcatPool2d``) halves the sum when the minimum term is present, (top + α·bottom) / 2; we
keep the paper's formula: a scale of the logits that changes neither the maps' ranking nor
the argmax.

Search ranges. Durand et al. use M = 4 and α = 0.7 in their main experiments and study
k⁺ = k⁻ as counts (1 upwards) and fractions of the regions; their public code's examples use
k = 0.2 (VOC 2007) and 0.4 (MIT67) with M = 8. Aggarwal et al. (Appendix A) report the best
WILDCAT model "across multiple learning rates, k, α and m" without listing the values.

Our defaults (``DEFAULTS``: M = 4, k⁺ = k⁻ = 0.2, α = 0.7, Durand's M and α) were chosen by
measurement: trained (lr 1e-3, 40 epochs, seed 0) on ``audit make-synthetic --box random``
(500 / 128 / 128 images) for the unbiased sample ResNet (cut at a 2×2 map) and a plain CNN
(7×7 map), varying one option at a time, scored by test AUC and localisation utility (mean
per-image AUPRC of the upsampled target class map against the crosses). On the 7×7 CNN the
default gave 0.066 (AUC 1.000), against M = 1: 0.025, M = 8: 0.054, k = 1: 0.027 (AUC 0.951),
k = 0.1: 0.041, k = 0.5: 0.061, α = 0: 0.059 (AUC 0.993), α = 1: 0.055. On the 2×2 map every
setting stays near the regions' base rate (0.017–0.026, AUC ≥ 0.996): four regions cannot
outline a cross.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from audit.errors import AuditError

#: maps per class M, k⁺, k⁻, α (README: measured on the synthetic crosses and a second model)
DEFAULTS = {"maps": 4, "k_max": 0.2, "k_min": 0.2, "alpha": 0.7}


def region_count(k: float, regions: int, flag: str, allow_zero: bool = False) -> int:
    """The number of regions ``k`` selects among ``regions`` (module docstring); AuditError
    naming ``flag`` for a count that cannot be used."""
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not math.isfinite(k) or k < 0:
        raise AuditError(f"{flag} {k}: give a count ≥ 1 or a fraction in (0, 1) of the feature map's regions")
    if k == 0:
        if allow_zero:
            return 0
        raise AuditError(f"{flag} 0: give a count ≥ 1 or a fraction in (0, 1) of the feature map's regions")
    if k < 1:
        return max(1, math.floor(k * regions + 0.5))
    if k != int(k):
        raise AuditError(f"{flag} {k}: a count above 1 must be a whole number; give a fraction in (0, 1) or an integer")
    if k > regions:
        raise AuditError(f"{flag} {int(k)}: larger than the feature map's {regions} regions; give at most {regions} "
                         f"or a fraction in (0, 1)")
    return int(k)


def check_options(maps: int, alpha: float) -> None:
    """AuditError for M < 1 or α < 0 (or not finite)."""
    if isinstance(maps, bool) or not isinstance(maps, int) or maps < 1:
        raise AuditError(f"--maps {maps}: give a whole number of maps per class, at least 1")
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
        raise AuditError(f"--alpha {alpha}: give a finite weight ≥ 0 for the lowest regions (0 keeps the maxima only)")


def spatial_pool(maps: torch.Tensor, k_max: int, k_min: int, alpha: float) -> torch.Tensor:
    """(N, K, h, w) class maps → (N, K) scores: mean of the ``k_max`` highest values plus
    ``alpha`` times the mean of the ``k_min`` lowest (counts already resolved)."""
    flat = maps.flatten(2)
    score = flat.topk(k_max, dim=2).values.mean(2)
    if k_min > 0 and alpha != 0:
        score = score + alpha * flat.topk(k_min, dim=2, largest=False).values.mean(2)
    return score


def class_wise_pool(z: torch.Tensor, classes: int, maps: int) -> torch.Tensor:
    """(N, K·M, h, w) → (N, K, h, w): the mean of each class's M consecutive maps.

    A ``reshape`` with the sizes spelled out, not ``unflatten``: a traced TorchScript file keeps
    no tensor ranks, and the ONNX exporter (which builds the differentiable twin of a .pt) cannot
    export ``unflatten`` without one."""
    return z.reshape(z.shape[0], classes, maps, z.shape[2], z.shape[3]).mean(2)


class WildcatHead(nn.Module):
    """1×1 convolution to M·K maps, class-wise mean, spatial pooling (module docstring).

    ``forward(features)`` → (scores (N, K), class_maps (N, K, h, w)). Counts given as fractions
    are resolved on the map's h·w at each call."""

    def __init__(self, in_channels: int, classes: int, maps: int = DEFAULTS["maps"], k_max: float = DEFAULTS["k_max"],
                 k_min: float = DEFAULTS["k_min"], alpha: float = DEFAULTS["alpha"]) -> None:
        super().__init__()
        check_options(maps, alpha)
        region_count(k_max, 1 << 62, "--k-max")  # the count's form; its size is checked on the map
        region_count(k_min, 1 << 62, "--k-min", allow_zero=True)
        self.classes, self.maps, self.k_max, self.k_min, self.alpha = classes, maps, k_max, k_min, float(alpha)
        self.transfer = nn.Conv2d(in_channels, maps * classes, kernel_size=1)

    def counts(self, h: int, w: int) -> tuple[int, int]:
        """(k⁺, k⁻) on an h × w map; AuditError when one is larger than h·w."""
        return region_count(self.k_max, h * w, "--k-max"), region_count(self.k_min, h * w, "--k-min", allow_zero=True)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        class_maps = class_wise_pool(self.transfer(features), self.classes, self.maps)
        k_max, k_min = self.counts(int(class_maps.shape[2]), int(class_maps.shape[3]))
        return spatial_pool(class_maps, k_max, k_min, self.alpha), class_maps

    def extra_repr(self) -> str:
        return f"classes={self.classes}, maps={self.maps}, k_max={self.k_max}, k_min={self.k_min}, alpha={self.alpha}"
