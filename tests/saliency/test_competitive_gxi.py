"""competitive-gxi on hand-computed linear cases (gradient = weights) and against captum's x ⊙ ∇."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import InputXGradient
from torch import nn

from audit.models.classifier import from_module
from audit.models.spec import InputSpec
from audit.saliency import methods

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def linear_classifier(weights: list[list[float]], channels: int, height: int, width: int):
    """y = W · flatten(x), no bias: ∂y_c/∂x = W_c, so S_c = x ⊙ W_c."""
    layer = nn.Linear(channels * height * width, len(weights), bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weights))
    module = nn.Sequential(nn.Flatten(), layer)
    spec = InputSpec(channels=channels, height=height, width=width)
    return from_module(module, spec, [f"c{k}" for k in range(len(weights))])


# One channel, one row of four pixels, three classes; x = [1, 2, 1, 1].
#   S_0 = [2,  2, -1, 1]
#   S_1 = [1,  2, -2, 1]   (ties class 0 at pixels 1 and 3)
#   S_2 = [3, -2,  0, 1]   (ties at pixel 3)
WEIGHTS = [[2, 1, -1, 1], [1, 1, -2, 1], [3, -1, 0, 1]]
EXPECTED = {
    0: [0, 2, 0, 1],  # loses pixel 0 to class 2 (3 > 2), pixel 2 to class 1 (-2 < -1)
    1: [0, 2, -2, 1],  # ties win; the most negative at pixel 2
    2: [3, -2, 0, 1],  # S_2 = 0 at pixel 2 is neither positive nor negative
}


@pytest.mark.parametrize("target", [0, 1, 2])
def test_hand_computed_case_with_ties(target):
    model = linear_classifier(WEIGHTS, channels=1, height=1, width=4)
    x = torch.tensor([[[[1.0, 2.0, 1.0, 1.0]]]])
    maps = methods.get("competitive-gxi")().attribute(model, x, torch.tensor([target]))
    np.testing.assert_array_equal(maps, np.array([[EXPECTED[target]]], dtype=np.float32))


def test_batch_mixes_targets():
    model = linear_classifier(WEIGHTS, channels=1, height=1, width=4)
    x = torch.tensor([[[[1.0, 2.0, 1.0, 1.0]]]]).repeat(3, 1, 1, 1)
    maps = methods.get("competitive-gxi")().attribute(model, x, torch.tensor([2, 0, 1]))
    np.testing.assert_array_equal(maps, np.array([[EXPECTED[k]] for k in (2, 0, 1)], np.float32))


def test_competition_is_after_the_channel_sum():
    """Two channels, one pixel, x = [1, 1]. S_0 = [3, -1] (sum 2), S_1 = [1, 0.5] (sum 1.5).
    Per pixel, class 0 wins (2 > 1.5), so class 1 gets 0; a per-channel competition would
    have given class 1 the 0.5 of channel 1 (0.5 > -1)."""
    model = linear_classifier([[3, -1], [1, 0.5]], channels=2, height=1, width=1)
    x = torch.ones(2, 2, 1, 1)
    maps = methods.get("competitive-gxi")().attribute(model, x, torch.tensor([0, 1]))
    np.testing.assert_array_equal(maps, np.array([[[2.0]], [[0.0]]], dtype=np.float32))


def test_kept_pixels_equal_input_x_gradient_and_map_is_not_zero(case):
    """Not the TorchRay bug (strict > against a max over all classes, t included: all zero)."""
    target = case.module(case.x).argmax(dim=1)
    maps = methods.get("competitive-gxi")().attribute(case.model, case.x, target)
    gxi = InputXGradient(case.module).attribute(case.x, target=target).sum(1).detach().numpy()
    kept = maps != 0
    assert kept.any(axis=(1, 2)).all()
    assert (~kept).any()
    np.testing.assert_allclose(maps[kept], gxi[kept], rtol=1e-5, atol=1e-6)
