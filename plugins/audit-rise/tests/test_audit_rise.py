"""RISE: entry-point discovery, the formula against numpy, a region model, seeding and batching."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from audit.errors import AuditError
from audit.models.classifier import Classifier, from_module
from audit.models.spec import InputSpec
from audit.saliency import methods

SIZE = 12


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models: torch's thread pool only adds contention on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_found_through_the_entry_point():
    """Needs ``pip install --no-deps -e plugins/audit-rise`` (``make install`` does it)."""
    from audit_rise import Rise

    assert methods.get("rise") is Rise
    assert methods.origin("rise") == "audit-rise"
    assert Rise.forward_only and not Rise.signed


def region_logits(x: torch.Tensor) -> torch.Tensor:
    """Class 0's logit is 8 × (mean of rows 2-5, columns 6-9 − 0.5); class 1's is 0."""
    score = 8 * (x[:, :, 2:6, 6:10].mean(dim=(1, 2, 3)) - 0.5)
    return torch.stack([score, torch.zeros_like(score)], dim=1)


def forward_only_classifier(forward) -> Classifier:
    def no_twin() -> nn.Module:
        raise AuditError("forward-only test model")

    return Classifier(
        path=Path("region.onnx"),
        format="onnx",
        sha256="",
        spec=InputSpec(1, SIZE, SIZE),
        multilabel=False,
        class_names=["region", "other"],
        forward_fn=forward,
        build_differentiable=no_twin,
    )


def test_map_peaks_on_the_region_the_model_reads():
    model = forward_only_classifier(region_logits)
    x = torch.ones(2, 1, SIZE, SIZE)
    maps = methods.get("rise")(masks=400, cells=4).attribute(model, x, torch.tensor([0, 1]))
    assert maps.shape == (2, SIZE, SIZE) and maps.dtype == np.float32
    inside = np.zeros((SIZE, SIZE), bool)
    inside[2:6, 6:10] = True
    row, col = np.unravel_index(maps[0].argmax(), (SIZE, SIZE))
    assert inside[row, col]
    assert maps[0][inside].mean() > maps[0][~inside].mean() + 0.08
    # class 1 is the complement: its probability falls when the region is kept
    assert maps[1][inside].mean() < maps[1][~inside].mean()


def bilinear_numpy(grid: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Half-pixel-centred bilinear resize (edge-clamped), written independently of torch."""

    def taps(out_size: int, in_size: int):
        src = np.maximum((np.arange(out_size) + 0.5) * in_size / out_size - 0.5, 0)
        low = np.floor(src).astype(int)
        return low, np.minimum(low + 1, in_size - 1), src - low

    r0, r1, fr = taps(out_h, grid.shape[0])
    c0, c1, fc = taps(out_w, grid.shape[1])
    top = grid[r0][:, c0] * (1 - fc) + grid[r0][:, c1] * fc
    bottom = grid[r1][:, c0] * (1 - fc) + grid[r1][:, c1] * fc
    return top * (1 - fr[:, None]) + bottom * fr[:, None]


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(16, 3),
    ).eval()


def test_formula_against_numpy_with_five_masks():
    rise = methods.get("rise")(masks=5, cells=3, p=0.4, seed=11, batch_size=2)
    module = small_cnn()
    model = from_module(module, InputSpec(3, SIZE, SIZE), ["a", "b", "c"])
    x = torch.randn(2, 3, SIZE, SIZE)
    target = torch.tensor([2, 0])

    grids, shifts = rise.draw_grids(SIZE, SIZE)
    cell = math.ceil(SIZE / 3)
    masks = np.stack([
        bilinear_numpy(g, 4 * cell, 4 * cell)[r : r + SIZE, c : c + SIZE]
        for g, (r, c) in zip(grids.numpy().astype(np.float64), shifts.numpy())
    ])
    expected = np.zeros((2, SIZE, SIZE))
    for n in range(2):
        for mask in masks:
            masked = x[n : n + 1].numpy() * mask
            logits = module(torch.from_numpy(masked.astype(np.float32))).detach().numpy()[0]
            probability = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
            expected[n] += probability[target[n]] * mask
    expected /= 5 * 0.4

    np.testing.assert_allclose(torch.cat(list(rise.mask_batches(SIZE, SIZE))), masks, atol=1e-6)
    np.testing.assert_allclose(rise.attribute(model, x, target), expected, rtol=1e-5, atol=1e-6)


def test_p_one_keeps_everything_so_the_map_is_the_probability():
    module = small_cnn()
    model = from_module(module, InputSpec(3, SIZE, SIZE), ["a", "b", "c"])
    x = torch.randn(1, 3, SIZE, SIZE)
    maps = methods.get("rise")(masks=3, p=1.0).attribute(model, x, torch.tensor([1]))
    probability = torch.softmax(module(x), dim=1)[0, 1].item()
    np.testing.assert_allclose(maps, np.full((1, SIZE, SIZE), probability), rtol=1e-5)


def test_seeded_and_independent_of_batch_size():
    model = forward_only_classifier(region_logits)
    x = torch.rand(1, 1, SIZE, SIZE)
    target = torch.tensor([0])
    first = methods.get("rise")(masks=50, seed=3, batch_size=64).attribute(model, x, target)
    rebatched = methods.get("rise")(masks=50, seed=3, batch_size=7).attribute(model, x, target)
    other_seed = methods.get("rise")(masks=50, seed=4).attribute(model, x, target)
    np.testing.assert_allclose(first, rebatched, rtol=1e-6)
    assert not np.allclose(first, other_seed)


@pytest.mark.parametrize("options", [dict(masks=0), dict(p=0.0), dict(cells=0)])
def test_bad_options(options):
    with pytest.raises(AuditError, match="rise"):
        methods.get("rise")(**options)
