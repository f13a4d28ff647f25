"""The rrr plugin: found through the entry point, and its penalty by hand on a linear model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from audit.finetune.layers import LayerTaps
from audit.finetune.losses import Step, losses
from audit_losses_example import right_reasons

torch.set_num_threads(1)


class Linear2(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, -1.0], [2.0, 0.5]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def _step(has_mask: bool) -> Step:
    model = Linear2()
    x = torch.tensor([[1.0, 2.0]]).reshape(1, 1, 1, 2)
    return Step(model, x, torch.tensor([1]), torch.tensor([[[False, True]]]), torch.tensor([has_mask]),
                LayerTaps(model, ["features"]), lambda_grad=10.0)


def test_registered_through_the_entry_point() -> None:
    assert losses.get("rrr") is right_reasons
    assert losses.origin("rrr") == "audit-losses-example"


def test_penalty_by_hand() -> None:
    # logits y = (−1, 3); Σ_k log p_k = Σ_k y_k − 2·logsumexp(y); d/dx = Σ_k w_k − 2 Σ_k p_k w_k
    step = _step(True)
    p = torch.softmax(torch.tensor([-1.0, 3.0]), 0)
    w = torch.tensor([[1.0, -1.0], [2.0, 0.5]])
    gradient = w.sum(0) - 2 * (p[:, None] * w).sum(0)
    terms = right_reasons(step)
    assert terms["rrr"].item() == pytest.approx(gradient[1].item() ** 2, rel=1e-5)  # only pixel 2 is annotated
    assert terms["total"].item() == pytest.approx(terms["clf"].item() + 10 * terms["rrr"].item(), rel=1e-5)
    terms["total"].backward()
    assert step.model.fc.weight.grad.abs().sum() > 0


def test_no_mask_no_penalty() -> None:
    terms = right_reasons(_step(False))
    assert terms["total"].item() == pytest.approx(terms["clf"].item())
