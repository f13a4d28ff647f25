import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import average_precision_score

from audit.errors import AuditError
from audit.metrics.localisation import (
    COLUMNS, RegionLocalisation, average_precision, overlap, relevance_rank_accuracy, top_pixels)
from metric_batches import build_batch


def localise(maps, region, **kwargs):
    metric = RegionLocalisation(**kwargs)
    maps = np.asarray(maps, dtype=float)
    metric.update(build_batch(maps, region=region))
    return metric


def first_image(metric):
    return {name: values[0] for name, values in metric.per_image().items()}


@settings(max_examples=60, deadline=None)
@given(arrays(np.int8, 30, elements=st.integers(0, 4)), arrays(bool, 30))
def test_average_precision_matches_sklearn_with_ties(scores, labels):
    labels[0] = True  # at least one positive
    assert average_precision(labels, scores) == pytest.approx(
        average_precision_score(labels, scores), rel=1e-12)


def test_per_image_auprc_matches_sklearn():
    rng = np.random.default_rng(7)
    maps, region = rng.normal(size=(4, 6, 6)), rng.random((4, 6, 6)) < 0.3
    region[:, 0, 0] = True
    auprc = localise(maps, region).per_image()["region_auprc"]
    maps32 = maps.astype(np.float32)
    expected = [average_precision_score(region[i].ravel(), np.abs(maps32[i]).ravel())
                for i in range(4)]
    np.testing.assert_allclose(auprc, expected, rtol=1e-12)


def test_batch_with_ties_matches_sklearn_and_numpy_image_by_image():
    rng = np.random.default_rng(11)
    maps, region = rng.integers(-3, 4, size=(6, 5, 7)).astype(float), rng.random((6, 5, 7)) < 0.4
    region[:, 0, 0] = True
    got = localise(maps, region).per_image()
    for i in range(6):
        scores, mask = np.abs(maps[i]).ravel(), region[i].ravel()
        assert got["region_auprc"][i] == pytest.approx(average_precision_score(mask, scores), rel=1e-12)
        kept = scores >= np.sort(scores)[-mask.sum()]  # inclusive top-p
        assert got["region_iou"][i] == pytest.approx((kept & mask).sum() / (kept | mask).sum(), rel=1e-12)
        maximal = scores == scores.max()
        assert got["region_pointing_game"][i] == pytest.approx((maximal & mask).sum() / maximal.sum())


def test_overlap_by_hand():
    g = np.arange(16.0).reshape(1, 4, 4)  # top 3 pixels: 15, 14, 13
    region = np.zeros((1, 4, 4), bool)
    region[0, 3, 3] = region[0, 3, 2] = region[0, 0, 0] = True  # holds 15 and 14, not 13
    values = first_image(localise(g, region))
    assert values["region_iou"] == pytest.approx(2 / 4)
    assert values["region_iop"] == pytest.approx(2 / 3)
    assert values["region_iot"] == pytest.approx(2 / 3)
    assert values["region_pointing_game"] == 1.0
    assert values["region_relevance_rank_accuracy"] == pytest.approx(2 / 3)
    assert values["region_relevance_mass"] == pytest.approx(29 / 120)


def test_ties_at_threshold_inclusive_keeps_all_exact_keeps_p_by_index():
    scores = np.array([[5.0, 3.0, 3.0], [3.0, 0.0, 0.0]])
    assert top_pixels(scores, 2, "inclusive").tolist() == [[True, True, True], [True, False, False]]
    assert top_pixels(scores, 2, "exact").tolist() == [[True, True, False], [False, False, False]]
    region = np.array([[[True, False, False], [True, False, False]]])
    inclusive = first_image(localise(scores[None], region))
    exact = first_image(localise(scores[None], region, ties="exact"))
    assert (inclusive["region_iou"], inclusive["region_iop"], inclusive["region_iot"]) == (
        pytest.approx(2 / 4), 1.0, pytest.approx(2 / 4))
    assert (exact["region_iou"], exact["region_iop"], exact["region_iot"]) == (
        pytest.approx(1 / 3), 0.5, 0.5)


def test_no_ties_both_rules_agree():
    g = np.random.default_rng(8).permutation(25).reshape(5, 5).astype(float)
    for count in (1, 7, 25):
        np.testing.assert_array_equal(top_pixels(g, count, "inclusive"),
                                      top_pixels(g, count, "exact"))
        assert top_pixels(g, count).sum() == count


@settings(max_examples=50, deadline=None)
@given(arrays(bool, (5, 5)), arrays(bool, (5, 5)))
def test_iou_is_symmetric_and_iop_iot_swap(a, b):
    a[0, 0] = b[4, 4] = True  # both non-empty
    iou_ab, iop_ab, iot_ab = overlap(a, b)
    iou_ba, iop_ba, iot_ba = overlap(b, a)
    assert iou_ab == iou_ba
    assert iop_ab == iot_ba and iot_ab == iop_ba


def test_mask_covering_the_whole_image_scores_one_everywhere():
    g = np.random.default_rng(9).random((1, 4, 4)) + 0.1
    values = first_image(localise(g, np.ones((1, 4, 4), bool)))
    assert all(values[name] == pytest.approx(1.0) for name in COLUMNS)


def test_empty_or_missing_region_is_not_defined_never_a_hit():
    g = np.ones((2, 3, 3))
    metric = RegionLocalisation()
    metric.update(build_batch(g, region=np.zeros((2, 3, 3), bool),
                              has_region=np.array([True, False])))
    result = metric.compute()
    assert result["excluded"]["empty_region_mask"] == 1
    assert result["excluded"]["no_region_mask"] == 1
    assert result["pointing_game"]["n"] == 0 and result["pointing_game"]["mean"] is None
    assert all(math.isnan(v) for column in metric.per_image().values() for v in column)


def test_pointing_game_ties_score_the_expected_hit():
    region = np.zeros((1, 4, 4), bool)
    region[0, :2, :2] = True
    assert first_image(localise(np.ones((1, 4, 4)), region))["region_pointing_game"] == 0.25
    outside = np.zeros((1, 4, 4))
    outside[0, 3, 3] = 1.0
    assert first_image(localise(outside, region))["region_pointing_game"] == 0.0


def test_signed_or_absolute_map():
    g = np.zeros((1, 3, 3))
    g[0, 0, 0], g[0, 2, 2] = -9.0, 1.0
    region = np.zeros((1, 3, 3), bool)
    region[0, 0, 0] = True
    assert first_image(localise(g, region))["region_pointing_game"] == 1.0
    assert first_image(localise(g, region, absolute=False))["region_pointing_game"] == 0.0


def test_relevance_mass_uses_positive_part_and_is_undefined_without_it():
    g = np.array([[[2.0, -5.0], [1.0, 1.0]]])
    region = np.array([[[True, True], [False, False]]])
    assert first_image(localise(g, region))["region_relevance_mass"] == pytest.approx(0.5)
    metric = localise(-np.ones((1, 2, 2)), region)
    assert math.isnan(first_image(metric)["region_relevance_mass"])
    assert metric.compute()["excluded"]["relevance_mass_without_positive_saliency"] == 1


def test_relevance_rank_accuracy_is_the_expected_share_over_tie_breaks():
    scores = np.array([[4.0, 2.0, 2.0], [2.0, 2.0, 0.0]])
    mask = np.array([[False, True, False], [True, False, True]])
    # top 3: the 4 plus two of the four tied 2s, chosen at random
    shares = [(np.count_nonzero(mask.ravel()[[0, *pair]])) / 3
              for pair in itertools.combinations([1, 2, 3, 4], 2)]
    assert relevance_rank_accuracy(scores, mask) == pytest.approx(np.mean(shares))


def test_blur_lets_a_spike_localise_its_neighbourhood():
    g = np.zeros((1, 9, 9))
    g[0, 4, 4] = 1.0
    region = np.zeros((1, 9, 9), bool)
    region[0, 3:6, 3:6] = True
    assert first_image(localise(g, region))["region_iou"] == pytest.approx(9 / 81)
    assert first_image(localise(g, region, blur_sigma=1.0))["region_iou"] == 1.0


def test_summary_has_every_metric_with_an_interval():
    rng = np.random.default_rng(10)
    maps, region = rng.normal(size=(5, 6, 6)), rng.random((5, 6, 6)) < 0.3
    region[:, 0, 0] = True
    result = localise(maps, region).compute()
    for name in ("iou", "iop", "iot", "auprc", "pointing_game", "relevance_mass",
                 "relevance_rank_accuracy"):
        assert result[name]["n"] == 5 and result[name]["ci_low"] <= result[name]["mean"]


def test_bad_options_are_audit_errors():
    with pytest.raises(AuditError, match="tie rule"):
        RegionLocalisation(ties="random")
    with pytest.raises(AuditError, match="negative"):
        RegionLocalisation(blur_sigma=-1)
