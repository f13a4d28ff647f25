"""The losses against values computed by hand on tiny inputs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from audit.errors import AuditError
from audit.finetune.layers import LayerTaps
from audit.finetune.losses import Step, actdiff_penalty, contrast, gradmask_penalty, losses

torch.set_num_threads(1)


class Linear2(nn.Module):
    """logits = W · flatten(x) for 1×1×2 inputs; 'features' (input of the last Linear) is flatten(x)."""

    def __init__(self, weight: list[list[float]]) -> None:
        super().__init__()
        self.fc = nn.Linear(2, len(weight), bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor(weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def _step(model: nn.Module, x, x_masked, labels, has_mask, scrambled, **weights) -> Step:
    x, x_masked = torch.tensor(x).reshape(-1, 1, 1, 2), torch.tensor(x_masked).reshape(-1, 1, 1, 2)
    step = Step(model, x, torch.tensor(labels), torch.tensor(scrambled).reshape(-1, 1, 2), torch.tensor(has_mask),
                LayerTaps(model, ["features"]), **weights)
    step.x_masked = x_masked  # hand-made, instead of a random permutation
    return step


def test_actdiff_penalty_is_the_mean_l2_distance_averaged_over_layers() -> None:
    clean = [torch.tensor([[0.0, 0.0], [1.0, 1.0]]), torch.zeros(2, 1, 2, 2)]
    masked = [torch.tensor([[3.0, 4.0], [1.0, 1.0]]), torch.ones(2, 1, 2, 2)]
    # layer 1: norms 5 and 0 → 2.5; layer 2: norms 2 and 2 → 2; mean over layers 2.25
    assert actdiff_penalty(clean, masked).item() == pytest.approx(2.25)


def test_contrast_is_target_minus_strongest_other() -> None:
    logits = torch.tensor([[1.0, 3.0, 2.0], [1.0, 3.0, 2.0], [0.5, -1.0, 0.0]])
    assert contrast(logits, torch.tensor([0, 1, 2])).tolist() == pytest.approx([2.0, 1.0, 0.5])
    two = torch.tensor([[0.2, 1.7]])
    assert contrast(two, torch.tensor([0])).item() == pytest.approx(1.5) == contrast(two, torch.tensor([1])).item()


def test_gradmask_penalty_sums_absolute_values_on_scrambled_pixels() -> None:
    gradient = torch.tensor([[[[1.0, -2.0], [3.0, -4.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])
    scrambled = torch.tensor([[[True, True], [False, True]], [[False, False], [False, False]]])
    assert gradmask_penalty(gradient, scrambled).item() == pytest.approx((1 + 2 + 4 + 0) / 2)


def test_actdiff_loss_multiplies_the_penalty_by_lambda() -> None:
    model = Linear2([[1.0, 0.0], [0.0, 1.0]])
    x, x_masked = [[1.0, 2.0], [0.0, 0.0]], [[1.0, 5.0], [3.0, 4.0]]
    step = _step(model, x, x_masked, [1, 0], [True, False], [[False, True], [True, True]], lambda_act=10.0)
    terms = losses.get("actdiff")(step)
    # CE of logits (1, 2) for class 1 and (0, 0) for class 0; L_act over the masked image only: ||(0, 3)|| = 3
    clf = (math.log(1 + math.exp(-1)) + math.log(2)) / 2
    assert terms["clf"].item() == pytest.approx(clf, abs=1e-6)
    assert terms["act"].item() == pytest.approx(3.0)
    assert terms["total"].item() == pytest.approx(clf + 10 * 3.0, abs=1e-5)


def test_actdiff_masked_forward_is_not_detached() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    torch.manual_seed(0)
    step = _step(model, [[1.0, 2.0]], [[2.0, 1.0]], [0], [True], [[True, True]])
    step.x_masked.requires_grad_(True)
    (gradient,) = torch.autograd.grad(losses.get("actdiff")(step)["act"], step.x_masked)
    assert gradient.abs().sum() > 0


def test_images_without_a_mask_take_no_penalty() -> None:
    model = Linear2([[1.0, -1.0], [2.0, 0.5]])
    step = _step(model, [[1.0, 2.0]], [[9.0, 9.0]], [0], [False], [[False, False]])
    for name in ("actdiff", "gradmask", "actdiff+gradmask"):
        terms = losses.get(name)(step)
        assert terms["total"].item() == pytest.approx(terms["clf"].item())


def test_gradmask_loss_on_a_linear_model() -> None:
    # logits y = W x, y1 − y0 = (w1 − w0)·x = (2 − 1)·x_a + (0.5 + 1)·x_b; d|y1 − y0|/dx = sign · (1, 1.5)
    model = Linear2([[1.0, -1.0], [2.0, 0.5]])
    step = _step(model, [[1.0, 2.0]], [[1.0, 2.0]], [1], [True], [[False, True]], lambda_grad=10.0)
    terms = losses.get("gradmask")(step)
    assert terms["grad"].item() == pytest.approx(1.5)  # only pixel b is scrambled
    assert terms["total"].item() == pytest.approx(terms["clf"].item() + 15.0)
    terms["grad"].backward()  # create_graph=True: the penalty trains the weights
    assert model.fc.weight.grad.abs().sum() > 0


def test_classify_masked_trains_on_the_masked_input() -> None:
    model = Linear2([[1.0, 0.0], [0.0, 1.0]])
    step = _step(model, [[5.0, 0.0]], [[0.0, 0.0]], [0], [True], [[True, True]])
    assert losses.get("classify-masked")(step)["total"].item() == pytest.approx(math.log(2))
    assert losses.get("none")(step)["total"].item() == pytest.approx(math.log(1 + math.exp(-5)), abs=1e-6)


def test_unknown_loss_lists_the_valid_ones() -> None:
    with pytest.raises(AuditError, match="actdiff.*classify-masked.*gradmask.*none"):
        losses.get("actdif2")
