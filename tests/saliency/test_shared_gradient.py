"""The pipeline's shared pass gives the same maps as each method's own captum call."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audit.models.classifier import from_module
from audit.models.spec import InputSpec
from audit.pipeline import SharedGradient
from audit.saliency import methods
from tests.conftest import TinyCNN


@pytest.mark.parametrize("name", ["gradient", "input-x-gradient"])
@pytest.mark.parametrize("channels", [1, 3])
def test_shared_gradient_equals_captum(name: str, channels: int) -> None:
    torch.manual_seed(0)
    classifier = from_module(TinyCNN(channels=channels, classes=3), InputSpec(channels, 28, 28), ["a", "b", "c"])
    x = torch.rand(5, channels, 28, 28)
    target = torch.tensor([0, 1, 2, 1, 0])
    method = methods.get(name)()
    assert method.uses_input_gradient
    shared = SharedGradient(classifier, x)
    np.testing.assert_allclose(shared.logits.numpy(), classifier.logits(x).numpy(), atol=1e-6)
    got = method.from_input_gradient(x, shared.gradient(target))
    np.testing.assert_allclose(got.numpy(), method.attribute(classifier, x, target).numpy(), rtol=1e-5, atol=1e-7)
    assert got.shape == (5, 28, 28) and got.dtype == torch.float32
