"""Competitive gradient ⊙ input, CGI (Gupta & Arora 2019, "A simple saliency method that passes the
sanity checks"; the saliency of Pfau et al. 2019, "Global saliency")."""

from __future__ import annotations

from typing import ClassVar

import torch

from audit.models.classifier import Classifier
from audit.saliency.base import SaliencyMethod, leaf_input, methods


@methods.register("competitive-gxi")
class CompetitiveGxI(SaliencyMethod):
    """Gradient ⊙ input of the target class, kept only at pixels the target class wins.

    For every class c, S_c(i, j) = Σ_ch x_ch,i,j · ∂y_c/∂x_ch,i,j (gradient ⊙ input summed over
    channels: the competition is between pixels, "competition for pixels" in the paper, so it
    happens after the channel reduction; for one-channel inputs the two readings coincide).
    The map keeps S_t(i, j) where S_t > 0 and t is an argmax of S_c(i, j) over classes, or
    S_t < 0 and t is an argmin, and is 0 elsewhere. Ties: t wins a tie (S_t ≥ max_c S_c), so a
    pixel shared equally by t and another class is kept, independent of class order. This is
    the argmax reading of the paper, not TorchRay's strict ``S_t > max_c S_c``, which includes
    t itself in the max and therefore zeroes every pixel. Signed. Costs one backward pass per
    class; only the running max and min over classes are kept in memory.
    """

    signed: ClassVar[bool] = True

    def attribute(self, model: Classifier, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = leaf_input(x)
        logits = model.differentiable(x)
        num_classes = logits.shape[1]
        target = target.to(x.device)
        target_map = best = worst = None
        for c in range(num_classes):
            (gradient,) = torch.autograd.grad(
                logits[:, c].sum(), x, retain_graph=c < num_classes - 1
            )
            class_map = (x.detach() * gradient).sum(dim=1)
            if target_map is None:
                target_map, best, worst = torch.zeros_like(class_map), class_map, class_map
            best = torch.maximum(best, class_map)
            worst = torch.minimum(worst, class_map)
            target_map = torch.where((target == c)[:, None, None], class_map, target_map)
        wins_positive = (target_map > 0) & (target_map >= best)
        wins_negative = (target_map < 0) & (target_map <= worst)
        wins = wins_positive | wins_negative
        competitive = torch.where(wins, target_map, torch.zeros_like(target_map))
        return competitive.detach().float()
