"""Attention-based maps of vision transformers: attention rollout (Abnar & Zuidema 2020,
"Quantifying attention flow in transformers") and gradient-weighted attention (Chefer, Gur &
Wolf 2021, "Generic attention-model explainability for interpreting bi-modal and
encoder-decoder transformers", self-attention rules).

Both read the attention probabilities A_l (N, heads, T, T) of layers l = 1 … L in execution
order (``audit.saliency.attention``), take a row of the relevance matrix R (T × T): the class
token's (token 0) over the patch tokens when the model has k ≥ 1 extra tokens in front (DeiT's
distillation token is dropped like the class token), the mean of all rows when k = 0 (no class
token: our choice), reshape it to the patch grid (``audit.saliency.tokens.token_grid``) and
upsample it to the input (``grad_cam.upsample``). Non-negative; computed in float64.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from audit.errors import AuditError
from audit.models.classifier import Classifier
from audit.saliency.attention import AttentionTap, by_head
from audit.saliency.base import SaliencyMethod, leaf_input, methods, network
from audit.saliency.grad_cam import upsample
from audit.saliency.tokens import token_grid


class AttentionMethod(SaliencyMethod):
    """Runs the layered model under an ``AttentionTap``; ``relevance`` makes R from the maps."""

    needs_hooks: ClassVar[bool] = True
    label: ClassVar[str]

    def __init__(self) -> None:
        self.settled: dict[str, Any] = {}

    def prepare(self, model: Classifier) -> None:
        module = network(model, self)  # built outside the tap: a twin's check pass would be tapped too
        with torch.no_grad(), AttentionTap() as tap:
            module(torch.zeros((1, *model.spec.shape), device=model.device))
        maps = by_head(tap.maps, 1, model.path, self.label)
        extra, height, width = self._grid(model, maps[0].shape[-1])
        self.settled = {"attention": {"layers": len(maps), "heads": [int(a.shape[1]) for a in maps],
                                      "tokens": int(maps[0].shape[-1]), "extra_tokens": extra,
                                      "grid": [height, width]}}

    def provenance(self) -> dict[str, Any]:
        return self.settled

    def _grid(self, model: Classifier, tokens: int) -> tuple[int, int, int]:
        try:
            return token_grid(tokens, (model.spec.height, model.spec.width))
        except AuditError as exc:
            raise AuditError(f"{self.label}: model {model.path} attends over tokens that do not form its patch "
                             f"grid: {exc}; use --method grad-cam or a gradient method") from exc

    def relevance(self, model: Classifier, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(N, T, T) float64 relevance R."""
        raise NotImplementedError

    def attribute(self, model: Classifier, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        relevance = self.relevance(model, x, target)
        extra, height, width = self._grid(model, relevance.shape[-1])
        row = relevance[:, 0] if extra else relevance.mean(1)
        grid = row[:, extra:].reshape(len(x), 1, height, width)
        return upsample(grid.float(), tuple(x.shape[2:])).detach()


@methods.register("attention-rollout")
class AttentionRollout(AttentionMethod):
    """R = Â_L ⋯ Â_1, Â_l = rownorm(½ Ā_l + ½ I), Ā_l = mean over heads of A_l (Abnar &
    Zuidema 2020, Eq. 1 with the residual as the identity; the head mean is their fusion);
    rownorm divides each row by its sum. Forward only: the target class does not change it."""

    label: ClassVar[str] = "attention-rollout"

    def relevance(self, model: Classifier, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        module = network(model, self)
        with torch.no_grad(), AttentionTap() as tap:
            module(x)
        rollout = None
        for a in by_head(tap.maps, len(x), model.path, self.label):
            mixed = 0.5 * a.double().mean(1) + 0.5 * torch.eye(a.shape[-1], dtype=torch.float64, device=a.device)
            mixed = mixed / mixed.sum(-1, keepdim=True)
            rollout = mixed if rollout is None else mixed @ rollout
        return rollout


@methods.register("gradient-weighted-attention")
class GradientWeightedAttention(AttentionMethod):
    """R = I, then per layer R ← R + Ā_l R with Ā_l = E_h[(∇A_l ⊙ A_l)⁺], ∇A_l = ∂y_t/∂A_l
    (Chefer et al. 2021, Eqs. 5–6: gradient-weighted head average, positive part, rules for
    self-attention). Needs the backward pass through the attention probabilities."""

    label: ClassVar[str] = "gradient-weighted-attention"

    def relevance(self, model: Classifier, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        module = network(model, self)
        with AttentionTap() as tap:
            logits = module(leaf_input(x))
        maps = tap.maps
        shaped = by_head(maps, len(x), model.path, self.label)
        score = logits.gather(1, target.reshape(-1, 1).to(logits.device)).sum()
        gradients = torch.autograd.grad(score, maps, allow_unused=True)
        tokens = shaped[0].shape[-1]
        relevance = torch.eye(tokens, dtype=torch.float64, device=shaped[0].device).expand(len(x), tokens, tokens)
        for a, gradient in zip(shaped, gradients):
            gradient = torch.zeros_like(a) if gradient is None else gradient.reshape(a.shape)
            weighted = (gradient.double() * a.detach().double()).clamp(min=0).mean(1)
            relevance = relevance + weighted @ relevance
        return relevance
