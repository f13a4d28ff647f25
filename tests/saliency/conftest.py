"""The ``case`` fixture: a small CNN, its Classifier, inputs and targets, in two shapes."""

from __future__ import annotations

from typing import Iterator

import pytest
import torch

from tests.saliency.small_models import Case, make_case


@pytest.fixture(params=[(1, 2), (3, 3)], ids=["1ch-2cls", "3ch-3cls"])
def case(request: pytest.FixtureRequest) -> Case:
    return make_case(*request.param)


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """These models are tiny: on a shared 2-core machine, torch's thread pool only adds
    contention (the folder ran 6× slower with the default). Restored after each test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
