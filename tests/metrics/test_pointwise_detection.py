"""Pointwise detection: AP against scikit-learn on random cases with tied scores, a hand-computed
case for the peak, the tie rule and the hits, images without a region as negatives, a run
without any region, merged halves against the whole, and the torch path against numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from audit.metrics.base import MapBatch
from audit.metrics.pointwise_detection import PointwiseDetection, detection_ap, peak_hits
from tests.metrics.metric_batches import split_batch


def batch(maps, region, has_region, scores, start: int = 0) -> MapBatch:
    maps = np.asarray(maps, dtype=np.float32)
    n = len(maps)
    return MapBatch.from_predictions([f"img{start + i}.png" for i in range(n)], np.zeros(n, int), np.zeros(n, int),
                                     np.asarray(scores, dtype=np.float64), maps, np.zeros(maps.shape, bool),
                                     np.asarray(region, bool), np.zeros(n, bool), np.asarray(has_region, bool))


@pytest.mark.parametrize("seed", range(8))
def test_ap_equals_sklearn_scaled_by_the_share_of_regions_hit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    positive = rng.random(n) < 0.6
    positive[0] = True
    hits = positive & (rng.random(n) < 0.5)
    hits[0] = True
    scores = np.round(rng.random(n), 1)  # ten distinct values: many ties, across hits and misses
    expected = average_precision_score(hits, scores) * hits.sum() / positive.sum()
    assert detection_ap(hits, scores, int(positive.sum())) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_the_metric_on_random_maps_equals_sklearn_on_the_peaks(seed: int) -> None:
    """Peaks found independently (a Python scan for the first maximum of |g|), sklearn's AP."""
    rng = np.random.default_rng(seed)
    n, side = 40, 5
    maps = rng.normal(size=(n, side, side)).round(1)  # tied maxima happen
    region = rng.random((n, side, side)) < 0.4
    has_region = rng.random(n) < 0.8
    region[~has_region] = False
    region[rng.random(n) < 0.1] = False  # some empty masks
    scores = np.round(rng.random(n), 1)
    metric = PointwiseDetection()
    for part in split_batch(batch(maps, region, has_region, scores), 7):
        metric.update(part)
    hits = []
    for i in range(n):
        flat = np.abs(maps[i].astype(np.float32)).ravel().tolist()
        first = flat.index(max(flat))
        hits.append(bool(region[i].ravel()[first]) and max(flat) > min(flat))
    hits, positives = np.array(hits), region.reshape(n, -1).any(axis=1)
    result = metric.compute()
    assert metric.per_image()["pointwise_hit"] == hits.astype(int).tolist()
    assert result["positives"] == positives.sum() and result["hits"] == hits.sum() and result["images"] == n
    assert result["map"] == pytest.approx(average_precision_score(hits, scores) * hits.sum() / positives.sum(), abs=1e-12)


def test_hand_computed_case() -> None:
    """Five 3×3 maps. img0: unique peak at (1, 2), in the region: hit, p 0.9. img1: maxima tied
    at (0, 1) and (2, 0), the region holds only (2, 0): the first in row-major order misses,
    p 0.8. img2: no region: a negative, p 0.7. img3: the peak of |g| is −5 at (2, 2), in the
    region: hit, p 0.6. img4: a constant map, region everywhere: points nowhere, a miss, p 0.95.
    Ranked: img4 (miss), img0 (hit), img1, img2, img3 (hit); 4 regions:
    AP = 1/4 · 1/2 + 1/4 · 2/5 = 0.225."""
    maps = np.zeros((5, 3, 3))
    maps[0, 1, 2] = 2.0
    maps[1, 0, 1] = maps[1, 2, 0] = 3.0
    maps[2, 0, 0] = 1.0
    maps[3, 2, 2], maps[3, 0, 0] = -5.0, 4.0
    maps[4] = 0.5
    region = np.zeros((5, 3, 3), bool)
    region[0, 1, 2] = region[1, 2, 0] = region[3, 2, 2] = True
    region[4] = True
    has_region = np.array([True, True, False, True, True])
    metric = PointwiseDetection()
    metric.update(batch(maps, region, has_region, [0.9, 0.8, 0.7, 0.6, 0.95]))
    assert metric.per_image() == {"pointwise_hit": [1, 0, 0, 1, 0]}
    assert metric.compute() == {"map": pytest.approx(0.225, abs=1e-15), "images": 5, "positives": 4, "hits": 2,
                                "score": "probability of the target class"}


def test_images_without_a_region_only_lower_precision() -> None:
    """A negative ranked above the one hit halves the precision at its recall; one below it
    changes nothing; an empty mask is a negative like a missing one."""
    maps = np.zeros((3, 2, 2))
    maps[:, 0, 0] = 1.0
    region = np.zeros((3, 2, 2), bool)
    region[0, 0, 0] = True
    above = PointwiseDetection()
    above.update(batch(maps, region, [True, True, False], [0.5, 0.9, 0.7]))
    below = PointwiseDetection()
    below.update(batch(maps, region, [True, True, False], [0.9, 0.5, 0.7]))
    assert above.compute()["map"] == pytest.approx(1 / 3) and below.compute()["map"] == pytest.approx(1.0)
    assert above.compute()["positives"] == 1


def test_no_region_at_all_is_null_with_a_reason() -> None:
    maps = np.random.default_rng(0).normal(size=(4, 3, 3))
    region = np.zeros((4, 3, 3), bool)
    metric = PointwiseDetection()
    metric.update(batch(maps, region, [False, False, True, False], [0.1, 0.2, 0.3, 0.4]))
    result = metric.compute()
    assert result["map"] is None and result["positives"] == 0 and result["hits"] == 0 and result["images"] == 4
    assert "no region mask: 3" in result["reason"] and "empty region mask: 1" in result["reason"]
    assert metric.per_image() == {"pointwise_hit": [0, 0, 0, 0]}


def test_merged_halves_equal_the_whole_after_a_state_round_trip() -> None:
    rng = np.random.default_rng(5)
    maps, region = rng.normal(size=(20, 4, 4)), rng.random((20, 4, 4)) < 0.3
    scores = np.round(rng.random(20), 1)
    whole = PointwiseDetection()
    whole.update(batch(maps, region, np.ones(20, bool), scores))
    first, second = PointwiseDetection(), PointwiseDetection()
    first.update(batch(maps[:9], region[:9], np.ones(9, bool), scores[:9]))
    second.update(batch(maps[9:], region[9:], np.ones(11, bool), scores[9:], start=9))
    loaded = PointwiseDetection()
    loaded.load_state_dict(second.state_dict())
    first.merge(loaded)
    assert first.compute() == whole.compute() and first.per_image() == whole.per_image()
    assert whole.compute()["map"] is not None


def test_the_torch_path_equals_numpy() -> None:
    rng = np.random.default_rng(2)
    maps = rng.normal(size=(30, 16)).round(1).astype(np.float32)
    maps[3] = 1.0  # constant
    region = rng.random((30, 16)) < 0.5
    mine = peak_hits(torch.from_numpy(maps), torch.from_numpy(region))
    assert mine.tolist() == peak_hits(maps, region).tolist()
    assert not mine[3]
