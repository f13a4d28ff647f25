"""The ``case`` fixture: a small CNN, its Classifier, inputs and targets, in two shapes."""

from __future__ import annotations


import pytest

from tests.saliency.small_models import Case, make_case


@pytest.fixture(params=[(1, 2), (3, 3)], ids=["1ch-2cls", "3ch-3cls"])
def case(request: pytest.FixtureRequest) -> Case:
    return make_case(*request.param)
