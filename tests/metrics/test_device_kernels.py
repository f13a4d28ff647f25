"""The torch kernels (``device_kernels``, what runs for maps on a GPU) against the numpy ones
(``host_kernels``), sklearn and hand-computed cases, on CPU tensors; and the whole metric layer
forced onto the torch kernels against the numpy path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from audit.metrics import base, device_kernels, host_kernels
from audit.metrics.global_saliency import peak_count
from audit.metrics.suite import MethodMetrics
from tests.metrics.metric_batches import random_batch


def _tied_rows(seed: int, n: int = 6, pixels: int = 50176) -> tuple[np.ndarray, np.ndarray]:
    """Signed float32 maps where many pixels are bit-equal (rounded to halves, a zero patch,
    a constant map) and masks of 5–40% of the pixels."""
    rng = np.random.default_rng(seed)
    maps = rng.normal(size=(n, pixels)).astype(np.float32)
    maps[1] = np.round(maps[1] * 2) / 2
    maps[2, : pixels // 2] = 0.0
    maps[3] = 0.25
    masks = rng.random((n, pixels)) < rng.uniform(0.05, 0.4, size=(n, 1))
    return maps, masks


@pytest.mark.parametrize("seed", [0, 1])
def test_torch_kernels_equal_numpy_within_1e_12(seed):
    maps, masks = _tied_rows(seed)
    flat, t_masks = torch.from_numpy(maps), torch.from_numpy(masks)
    flat64, t_flat64 = maps.astype(np.float64), flat.double()
    k = peak_count(maps.shape[1], 98.0)
    pairs = [
        (host_kernels.mean_on_rows(flat64, masks), device_kernels.mean_on_rows(t_flat64, t_masks)),
        (host_kernels.peak_on_rows(flat64, masks, k), device_kernels.peak_on_rows(t_flat64, t_masks, k)),
        (host_kernels.pixel_moments(flat64), device_kernels.pixel_moments(t_flat64)),
        (host_kernels.shares_on_rows(flat64, masks), device_kernels.shares_on_rows(t_flat64, t_masks)),
        (host_kernels.localisation_rows(maps, masks), device_kernels.localisation_rows(flat, t_masks)),
        (host_kernels.localisation_rows(maps, masks, absolute=False),
         device_kernels.localisation_rows(flat, t_masks, absolute=False)),
    ]
    for expected, got in pairs:
        got = device_kernels.to_host([got]).reshape(np.shape(expected))
        scale = max(1.0, float(np.nanmax(np.abs(expected))))
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * scale)


def test_torch_average_precision_matches_sklearn_with_ties():
    maps, masks = _tied_rows(2, n=4, pixels=3000)
    scores = torch.from_numpy(np.abs(maps))
    got = device_kernels.average_precision_rows(scores, torch.from_numpy(masks), torch.sort(scores, dim=1).values)
    for row in range(len(maps)):
        assert float(got[row]) == pytest.approx(average_precision_score(masks[row], np.abs(maps[row])), abs=1e-12)


def test_torch_top_k_by_hand():
    """Scores (3, 1, 1, 1, 0, 0) with mask (1, 1, 0, 0, 1, 0): top 2 keeps the 3 and a third of
    each 1, so |S ∩ L| = 1 + 1/3; the pointing game hits (the single maximum is inside); a
    constant map keeps k/N of every pixel, chance |L|/N."""
    scores = torch.tensor([[3.0, 1, 1, 1, 0, 0], [2.0, 2, 2, 2, 2, 2]])
    mask = torch.tensor([[1, 1, 0, 0, 1, 0], [1, 1, 0, 0, 1, 0]], dtype=torch.bool)
    ascending = torch.sort(scores, dim=1).values
    counts = torch.tensor([2, 2])
    inside = device_kernels.kept_inside(scores, device_kernels.kth_largest(ascending, counts), counts, mask)
    assert inside.tolist() == pytest.approx([1 + 1 / 3, 1.0], abs=1e-15)
    assert device_kernels.pointing_game_rows(scores, mask, ascending).tolist() == pytest.approx([1.0, 0.5], abs=1e-15)
    # relevance mass: (3 + 1 + 0) / 6 and 6 / 12
    assert device_kernels.relevance_mass_rows(scores, mask).tolist() == pytest.approx([4 / 6, 0.5], abs=1e-15)
    zero = device_kernels.shares_on_rows(torch.zeros(1, 6, dtype=torch.float64), mask[:1])
    assert math.isnan(float(zero[0]))


def test_row_sums_do_not_depend_on_the_batch():
    maps, _ = _tied_rows(3, n=5)
    rows = torch.from_numpy(maps).double()
    one_by_one = torch.cat([device_kernels.pixel_moments(rows[i : i + 1]) for i in range(len(rows))])
    assert torch.equal(device_kernels.pixel_moments(rows), one_by_one)


@pytest.mark.parametrize("blur", [0.0, 1.0])
def test_metrics_on_the_torch_kernels_equal_the_numpy_path(monkeypatch, blur):
    """Every metric's per-image columns and summaries with the maps 'on a device' (the torch
    kernels, masks moved as tensors) equal the numpy path within 1e-12."""
    batches = [random_batch(seed, n=12, size=16) for seed in range(3)]

    def run() -> MethodMetrics:
        metrics = MethodMetrics(["a", "b", "c"], region_blur=blur)
        for batch in batches:
            batch.maps = torch.from_numpy(np.asarray(batch.maps))
            batch._on_device.clear()
            metrics.update(batch)
        return metrics

    host = run()
    monkeypatch.setattr(base, "on_host", lambda maps: False)
    device = run()
    expected, got = host.per_image(), device.per_image()
    assert expected.keys() == got.keys()
    for column in expected:
        np.testing.assert_allclose(got[column], expected[column], rtol=1e-12, atol=1e-12, err_msg=column)
    for name, metric in host.parts().items():
        assert metric.excluded == device.parts()[name].excluded, name


def test_example_keeper_on_the_device_path_keeps_the_same_maps(monkeypatch):
    """Class sums by class on the device and only kept maps copied: the same state as numpy."""
    from audit.report.examples import ExampleKeeper

    batches = [random_batch(seed, n=12, size=16) for seed in range(3)]

    def keep() -> ExampleKeeper:
        keeper = ExampleKeeper(3, (16, 16), k=4)
        for batch in batches:
            maps = np.asarray(batch.maps)
            batch.maps = torch.from_numpy(maps)
            scores = np.where(np.arange(len(batch)) % 5 == 0, math.nan, maps.reshape(len(batch), -1).max(axis=1))
            keeper.update(batch, np.zeros((len(batch), 16, 16, 1), np.float32), scores)
        return keeper

    host = keep().state_dict()
    monkeypatch.setattr(base, "on_host", lambda maps: False)
    device = keep().state_dict()
    assert host.keys() == device.keys()
    for name, value in host.items():
        got = device[name]
        if name == "sums":
            np.testing.assert_allclose(got, value, rtol=1e-12, atol=1e-12)
        elif isinstance(value, list) and value and isinstance(value[0], np.ndarray):
            assert all(isinstance(g, np.ndarray) and np.array_equal(g, v) for g, v in zip(got, value, strict=True)), name
        else:
            assert np.array_equal(np.asarray(got), np.asarray(value), equal_nan=np.asarray(value).dtype.kind == "f"), name
