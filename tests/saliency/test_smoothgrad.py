"""smoothgrad and smoothgrad-ig against captum's NoiseTunnel under the same seed; determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, NoiseTunnel, Saliency

from audit.errors import AuditError
from audit.saliency import methods

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SAMPLES = 6


def captum_smoothgrad(attribution_method, x, target, seed, **kwargs):
    """NoiseTunnel on one image at a time (it draws from the global RNG), σ = 0.15 · range."""
    maps = []
    for image, label in zip(x, target):
        torch.manual_seed(seed)
        smoothed = NoiseTunnel(attribution_method).attribute(
            image[None],
            nt_type="smoothgrad",
            nt_samples=SAMPLES,
            stdevs=0.15 * float(image.max() - image.min()),
            target=int(label),
            **kwargs,
        )
        maps.append(smoothed.detach().abs().amax(dim=1)[0])
    return torch.stack(maps).numpy()


def test_smoothgrad_matches_captum(case):
    expected = captum_smoothgrad(Saliency(case.module), case.x, case.target, seed=3, abs=False)
    method = methods.get("smoothgrad")(samples=SAMPLES, seed=3)
    maps = method.attribute(case.model, case.x, case.target)
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-6)


def test_smoothgrad_ig_matches_captum(case):
    expected = captum_smoothgrad(
        IntegratedGradients(case.module), case.x, case.target, seed=1, n_steps=10
    )
    method = methods.get("smoothgrad-ig")(samples=SAMPLES, seed=1, n_steps=10)
    maps = method.attribute(case.model, case.x, case.target)
    np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["smoothgrad", "smoothgrad-ig"])
def test_same_seed_same_maps_other_seed_other_maps(case, name):
    options = dict(samples=3) if name == "smoothgrad" else dict(samples=3, n_steps=5)
    first = methods.get(name)(seed=7, **options).attribute(case.model, case.x, case.target)
    torch.randn(10)  # the global RNG must not matter
    again = methods.get(name)(seed=7, **options).attribute(case.model, case.x, case.target)
    other = methods.get(name)(seed=8, **options).attribute(case.model, case.x, case.target)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_map_does_not_depend_on_the_batch(case):
    method = methods.get("smoothgrad")(samples=4)
    batch = method.attribute(case.model, case.x, case.target)
    alone = method.attribute(case.model, case.x[1:2], case.target[1:2])
    np.testing.assert_allclose(batch[1:2], alone, rtol=1e-6, atol=1e-7)


def test_noise_level_zero_is_the_gradient(case):
    smooth = methods.get("smoothgrad")(samples=2, noise_level=0.0)
    plain = methods.get("gradient")()
    np.testing.assert_allclose(
        smooth.attribute(case.model, case.x, case.target),
        plain.attribute(case.model, case.x, case.target),
        rtol=1e-6,
    )


def test_literature_defaults():
    smoothgrad = methods.get("smoothgrad")()
    assert (smoothgrad.samples, smoothgrad.noise_level, smoothgrad.seed) == (50, 0.15, 0)
    assert methods.get("smoothgrad-ig")().n_steps == 50


@pytest.mark.parametrize("options", [dict(samples=0), dict(noise_level=-0.1)])
def test_bad_options(options):
    with pytest.raises(AuditError):
        methods.get("smoothgrad")(**options)
