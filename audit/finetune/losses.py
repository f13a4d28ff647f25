"""Fine-tuning losses of Viviano et al. (2019), "Underwhelming generalization improvements from
controlling feature attribution", and their controls, in the ``losses`` registry.

Every loss is a callable ``loss(step) -> dict`` of scalar tensors with ``total`` (what is
back-propagated), ``clf`` and its penalty terms. Penalties are averaged over the images of the
batch that have a mask (``step.has_mask``); a batch without any takes no penalty (0).

- ``none``: L_clf = cross-entropy on x (the control: plain training for the same epochs).
- ``classify-masked``: cross-entropy on x_masked (train on masked inputs, evaluate on x).
- ``actdiff``: L_clf + λ_act · L_act, L_act = (1/n) Σ_l mean_i ||o_l(x_masked,i) − o_l(x_i)||₂
  over the chosen layers' pre-activation outputs; x and x_masked in two forward passes (the
  reference code's), the masked pass not detached.
- ``gradmask``: L_clf + λ_grad · L_grad, L_grad = mean_i Σ_pixels |∂c_i/∂x_i ⊙ s_i|, where s
  marks the scrambled pixels (outside the kept region, or on the artefact: 1 − mask in the
  paper) and c_i = |y_t − max_{k≠t} y_k| is the logit contrast between the target (label) class
  t and the strongest other class — for two classes exactly the paper's |y_1 − y_0|. Computed
  with ``create_graph=True``; the reference sums absolute values.
- ``actdiff+gradmask``: both penalties.

Plugins add losses through the ``audit.losses`` entry-point group (see
``plugins/audit-losses-example``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from audit.finetune.layers import LayerTaps
from audit.finetune.masking import permute_scrambled
from audit.registry import Registry


@dataclass
class Step:
    """One training batch as a loss sees it.

    x: (N, C, H, W) normalised input; labels: (N,); scrambled: (N, H, W) bool, pixels x_masked
    permutes; has_mask: (N,) bool; taps: reads actdiff's layers; lambda_act / lambda_grad:
    weights; generator: draws the permutation. ``x_masked`` (x with the scrambled pixels
    permuted, equal to x where there is no mask) is computed on first use, so losses that do
    not need it do not pay for it.
    """

    model: nn.Module
    x: torch.Tensor
    labels: torch.Tensor
    scrambled: torch.Tensor
    has_mask: torch.Tensor
    taps: LayerTaps
    lambda_act: float = 1.0
    lambda_grad: float = 10.0
    generator: torch.Generator | None = None

    @cached_property
    def x_masked(self) -> torch.Tensor:
        return permute_scrambled(self.x, self.scrambled, self.generator or torch.Generator().manual_seed(0))


Loss = Callable[[Step], dict[str, torch.Tensor]]
losses: Registry[Loss] = Registry(
    "fine-tuning loss", "audit.losses",
    lambda entry: None if callable(entry) else f"{entry!r:.60} is not callable; a loss is a function loss(step) -> dict of tensors",
)


def actdiff_penalty(clean: list[torch.Tensor], masked: list[torch.Tensor]) -> torch.Tensor:
    """(1/n) Σ_l mean_i ||masked_l,i − clean_l,i||₂ over n layers of (N, ...) activations."""
    return torch.stack([(m - c).flatten(1).norm(dim=1).mean() for c, m in zip(clean, masked)]).mean()


def contrast(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N,) |y_t − max_{k≠t} y_k|: for two classes |y_1 − y_0|."""
    chosen = logits.gather(1, target[:, None])[:, 0]
    others = logits.scatter(1, target[:, None], float("-inf")).amax(dim=1)
    return (chosen - others).abs()


def gradmask_penalty(gradient: torch.Tensor, scrambled: torch.Tensor) -> torch.Tensor:
    """mean_i Σ_{c,h,w} |gradient ⊙ scrambled| over the images given (N, C, H, W) and (N, H, W)."""
    return (gradient * scrambled[:, None].to(gradient.dtype)).abs().flatten(1).sum(dim=1).mean()


def _zero(step: Step) -> torch.Tensor:
    return step.x.new_zeros(())


def _forward(step: Step, with_masked: bool, input_gradient: bool) -> dict[str, torch.Tensor]:
    """Shared body of actdiff and gradmask: a forward pass of x and, for actdiff, a second one
    of x_masked for the images with a mask (two passes, as the reference code: in train mode
    each is normalised by its own batch statistics); cross-entropy on x and the requested
    penalties."""
    x = step.x.detach().clone().requires_grad_(True) if input_gradient else step.x
    with step.taps.recording():
        logits = step.model(x)
    clean = step.taps.taken()
    terms = {"clf": F.cross_entropy(logits, step.labels)}
    total = terms["clf"]
    if with_masked:
        if bool(step.has_mask.any()):
            with step.taps.recording():
                step.model(step.x_masked[step.has_mask])
            terms["act"] = actdiff_penalty([t[step.has_mask] for t in clean], step.taps.taken())
        else:
            terms["act"] = _zero(step)
        total = total + step.lambda_act * terms["act"]
    if input_gradient:
        if bool(step.has_mask.any()):
            (gradient,) = torch.autograd.grad(contrast(logits, step.labels).sum(), x, create_graph=True)
            terms["grad"] = gradmask_penalty(gradient[step.has_mask], step.scrambled[step.has_mask])
        else:
            terms["grad"] = _zero(step)
        total = total + step.lambda_grad * terms["grad"]
    return {"total": total, **terms}


@losses.register("none")
def plain(step: Step) -> dict[str, torch.Tensor]:
    """Cross-entropy on the unmasked input (the control)."""
    clf = F.cross_entropy(step.model(step.x), step.labels)
    return {"total": clf, "clf": clf}


@losses.register("classify-masked")
def classify_masked(step: Step) -> dict[str, torch.Tensor]:
    """Cross-entropy on x_masked; evaluation stays on unmasked inputs."""
    clf = F.cross_entropy(step.model(step.x_masked), step.labels)
    return {"total": clf, "clf": clf}


@losses.register("actdiff")
def actdiff(step: Step) -> dict[str, torch.Tensor]:
    """L_clf + λ_act · L_act (Viviano et al. 2019, eq. 1)."""
    return _forward(step, with_masked=True, input_gradient=False)


@losses.register("gradmask")
def gradmask(step: Step) -> dict[str, torch.Tensor]:
    """L_clf + λ_grad · L_grad (Simpson et al. 2019; Viviano et al. 2019, eq. 2)."""
    return _forward(step, with_masked=False, input_gradient=True)


@losses.register("actdiff+gradmask")
def actdiff_gradmask(step: Step) -> dict[str, torch.Tensor]:
    """L_clf + λ_act · L_act + λ_grad · L_grad."""
    return _forward(step, with_masked=True, input_gradient=True)
