"""The ``case`` fixture: a small CNN, its Classifier, inputs and targets, in two shapes."""

from __future__ import annotations


import pytest

from tests.saliency.small_models import Case, make_case


@pytest.fixture(params=[(1, 2), (3, 3)], ids=["1ch-2cls", "3ch-3cls"])
def case(request: pytest.FixtureRequest) -> Case:
    return make_case(*request.param)


@pytest.fixture
def vit_case() -> Case:
    """A tiny ViT (``vit_models``, hand-written attention), 3 × 32 × 32, three classes."""
    import torch

    from audit.models.classifier import from_module
    from audit.models.spec import InputSpec
    from tests.saliency.vit_models import SIZE, tiny_vit

    module = tiny_vit(True)
    model = from_module(module, InputSpec(channels=3, height=SIZE, width=SIZE), ["a", "b", "c"])
    torch.manual_seed(0)
    return Case(module, model, torch.randn(2, 3, SIZE, SIZE), torch.tensor([0, 2]))
