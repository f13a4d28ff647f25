"""gradient, input-x-gradient, integrated-gradients, guided-backprop against captum itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import GuidedBackprop, InputXGradient, IntegratedGradients, Saliency
from torch import nn

from audit.errors import AuditError
from audit.models.classifier import from_module
from audit.models.spec import InputSpec
from audit.saliency import methods

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

TOLERANCE = dict(rtol=1e-5, atol=1e-6)


def test_gradient_is_max_abs_over_channels(case):
    expected = Saliency(case.module).attribute(case.x, target=case.target, abs=False).abs().amax(1)
    maps = methods.get("gradient")().attribute(case.model, case.x, case.target)
    np.testing.assert_allclose(maps, expected.numpy(), **TOLERANCE)


def test_input_x_gradient_is_signed_channel_sum(case):
    expected = InputXGradient(case.module).attribute(case.x, target=case.target).sum(1)
    maps = methods.get("input-x-gradient")().attribute(case.model, case.x, case.target)
    np.testing.assert_allclose(maps, expected.detach().numpy(), **TOLERANCE)
    assert methods.get("input-x-gradient").signed


@pytest.mark.parametrize("n_steps", [50, 7])
def test_integrated_gradients_zero_baseline(case, n_steps):
    expected = IntegratedGradients(case.module).attribute(
        case.x, baselines=torch.zeros_like(case.x), target=case.target, n_steps=n_steps
    )
    method = methods.get("integrated-gradients")(n_steps=n_steps)
    maps = method.attribute(case.model, case.x, case.target)
    np.testing.assert_allclose(maps, expected.sum(1).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_integrated_gradients_default_is_50_steps():
    assert methods.get("integrated-gradients")().n_steps == 50


def test_integrated_gradients_rejects_zero_steps():
    with pytest.raises(AuditError, match="n_steps"):
        methods.get("integrated-gradients")(n_steps=0)


def test_guided_backprop_is_signed_channel_sum(case):
    expected = GuidedBackprop(case.module).attribute(case.x, target=case.target).sum(1)
    maps = methods.get("guided-backprop")().attribute(case.model, case.x, case.target)
    np.testing.assert_allclose(maps, expected.detach().numpy(), **TOLERANCE)
    plain = methods.get("input-x-gradient")().attribute(case.model, case.x, case.target)
    assert not np.allclose(maps, plain)


class FunctionalRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(2 * 14 * 14, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


@pytest.mark.parametrize("name", ["guided-backprop", "guided-grad-cam"])
def test_guided_methods_refuse_models_without_relu_modules(name):
    model = from_module(FunctionalRelu(), InputSpec(1, 16, 16), ["a", "b"])
    with pytest.raises(AuditError, match="needs nn.ReLU modules"):
        methods.get(name)().attribute(model, torch.randn(1, 1, 16, 16), torch.tensor([0]))
