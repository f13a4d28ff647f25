"""Right for the right reasons (Ross, Hughes & Doshi-Velez 2017), an ``audit.losses`` plugin.

L = CE(x) + λ_grad · mean_i Σ_{c,h,w} (A_i ⊙ ∂(Σ_k log p_k(x_i))/∂x_i)², A = the scrambled
pixels of ``Step`` (what must not matter); the mean runs over images with a mask. Unlike
gradmask (which penalises the gradient of a logit contrast, in absolute value), the input
gradient of the summed log-probabilities is penalised squared, as in the paper (eq. 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from audit.finetune.losses import Step


def right_reasons(step: Step) -> dict[str, torch.Tensor]:
    x = step.x.detach().clone().requires_grad_(True)
    logits = step.model(x)
    clf = F.cross_entropy(logits, step.labels)
    if not bool(step.has_mask.any()):
        return {"total": clf, "clf": clf, "rrr": clf.new_zeros(())}
    (gradient,) = torch.autograd.grad(F.log_softmax(logits, dim=1).sum(), x, create_graph=True)
    annotated = step.scrambled[:, None].to(gradient.dtype)
    penalty = (gradient * annotated)[step.has_mask].pow(2).flatten(1).sum(dim=1).mean()
    return {"total": clf + step.lambda_grad * penalty, "clf": clf, "rrr": penalty}
