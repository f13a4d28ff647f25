"""Every built-in method: registered under its CLI name, (N, H, W) float32 tensors on the
input's device, no side effects."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audit.saliency import SaliencyMethod, methods

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

FAST_OPTIONS = {
    "integrated-gradients": dict(n_steps=4),
    "smoothgrad": dict(samples=2),
    "smoothgrad-ig": dict(samples=2, n_steps=3),
    "occlusion": dict(window=0.25, stride=0.25),
}
BUILTINS = [
    "gradient",
    "input-x-gradient",
    "competitive-gxi",
    "integrated-gradients",
    "smoothgrad",
    "smoothgrad-ig",
    "guided-backprop",
    "grad-cam",
    "guided-grad-cam",
    "occlusion",
    "attention-rollout",
    "gradient-weighted-attention",
]
TRANSFORMER_ONLY = {"attention-rollout", "gradient-weighted-attention"}
RELU_ONLY = {"guided-backprop", "guided-grad-cam"}
SIGNED = {
    "input-x-gradient",
    "competitive-gxi",
    "integrated-gradients",
    "guided-backprop",
    "guided-grad-cam",
    "occlusion",
}


@pytest.mark.parametrize("name", [n for n in BUILTINS if n not in TRANSFORMER_ONLY])
def test_maps_are_n_h_w_float32_and_leave_the_model_alone(case, name):
    check_contract(case, name)


@pytest.mark.parametrize("name", [n for n in BUILTINS if n not in RELU_ONLY])
def test_on_a_vision_transformer_too(vit_case, name):
    check_contract(vit_case, name)


def check_contract(case, name):
    cls = methods.get(name)
    assert issubclass(cls, SaliencyMethod) and methods.origin(name) == "builtin"
    x_before = case.x.clone()
    maps = cls(**FAST_OPTIONS.get(name, {})).attribute(case.model, case.x, case.target)
    n, _, h, w = case.x.shape
    assert isinstance(maps, torch.Tensor) and maps.device == case.x.device and maps.dtype == torch.float32
    maps = maps.numpy()
    assert maps.shape == (n, h, w)
    assert np.isfinite(maps).all() and (maps != 0).any()
    assert cls.signed == (name in SIGNED)
    if not cls.signed:
        assert (maps >= 0).all()
    assert not case.x.requires_grad and torch.equal(case.x, x_before)
    assert all(p.grad is None for p in case.module.parameters())


def test_flags():
    assert methods.get("occlusion").forward_only
    assert [n for n in BUILTINS if methods.get(n).forward_only] == ["occlusion"]
    assert {n for n in BUILTINS if methods.get(n).needs_layer} == {"grad-cam", "guided-grad-cam"}
    assert {n for n in BUILTINS if methods.get(n).needs_hooks} == {"grad-cam", "guided-grad-cam", "guided-backprop",
                                                                   *TRANSFORMER_ONLY}
