import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats
from sklearn.metrics import average_precision_score

from audit.errors import AuditError
from audit.metrics.localisation import COLUMNS, RegionLocalisation, average_precision
from metric_batches import build_batch


def localise(maps, region, **kwargs):
    metric = RegionLocalisation(**kwargs)
    maps = np.asarray(maps, dtype=float)
    metric.update(build_batch(maps, region=region))
    return metric


def first_image(metric):
    return {name: values[0] for name, values in metric.per_image().items()}


def expected_overlap_over_tie_breaks(scores, mask, k):
    """E|S ∩ L| over every way of breaking the tie at the k-th largest score, by enumeration."""
    scores, mask = np.ravel(scores), np.ravel(mask)
    threshold = np.sort(scores)[-k]
    above, tied = np.flatnonzero(scores > threshold), np.flatnonzero(scores == threshold)
    return np.mean([mask[above].sum() + mask[list(chosen)].sum()
                    for chosen in itertools.combinations(tied, k - above.size)])


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
        k = mask.sum()
        threshold = np.sort(scores)[-k]
        above, tied = scores > threshold, scores == threshold
        inside = (above & mask).sum() + (k - above.sum()) * (tied & mask).sum() / tied.sum()
        assert got["region_iou"][i] == pytest.approx(inside / (2 * k - inside), rel=1e-12)
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


def test_ties_at_the_threshold_share_the_leftover_by_expected_value():
    scores = np.array([[[5.0, 3.0, 3.0], [3.0, 0.0, 0.0]]])
    region = np.array([[[True, False, False], [True, False, False]]])
    # k = |L| = 2: the 5 (in L) is kept; the three 3s share the one pixel left, 1/3 each, and
    # one of them is in L: |S ∩ L| = 1 + 1/3, |S| = 2, |S ∪ L| = 2 + 2 − 4/3
    values = first_image(localise(scores, region))
    assert values["region_iop"] == pytest.approx(2 / 3)
    assert values["region_iot"] == pytest.approx(2 / 3)
    assert values["region_iou"] == pytest.approx(1 / 2)
    assert values["region_relevance_rank_accuracy"] == pytest.approx(2 / 3)
    assert values["region_pointing_game"] == 1.0


def test_map_zero_off_a_few_strokes_is_scored_by_where_the_strokes_are():
    # integrated gradients is exactly zero off the strokes: 3 stroke pixels, |L| = 8 of 64
    region = np.zeros((1, 8, 8), bool)
    region[0, 0, :8] = True
    inside, outside = np.zeros((1, 8, 8)), np.zeros((1, 8, 8))
    inside[0, 0, :3] = outside[0, 7, :3] = [0.5, 1.0, 2.0]
    # strokes in L: the 3 kept, the 61 zeros share the 5 left (5 of them in L): 3 + 25/61
    values = first_image(localise(inside, region))
    assert values["region_iop"] == pytest.approx((3 + 25 / 61) / 8)
    assert values["region_iou"] == pytest.approx((3 + 25 / 61) / (16 - 3 - 25 / 61))
    # strokes off L: only the zeros' share lands in L, below chance (8/64); keeping every tied
    # pixel would have scored IoP = 1 here
    values = first_image(localise(outside, region))
    assert values["region_iop"] == pytest.approx(8 * 5 / 61 / 8)
    assert values["region_iop"] < 8 / 64
    # a constant map: chance, whatever the positions
    assert first_image(localise(np.ones((1, 8, 8)), region))["region_iop"] == pytest.approx(8 / 64)


@settings(max_examples=60, deadline=None)
@given(arrays(np.int8, (3, 4), elements=st.integers(0, 2)), arrays(bool, (3, 4)))
def test_overlap_is_the_expected_value_over_every_tie_break(scores, region):
    region[0, 0] = True
    k = int(region.sum())
    inside = expected_overlap_over_tie_breaks(scores, region, k)
    values = first_image(localise(scores[None], region[None]))
    assert values["region_iop"] == pytest.approx(inside / k, rel=1e-12)
    assert values["region_iot"] == pytest.approx(inside / k, rel=1e-12)
    assert values["region_iou"] == pytest.approx(inside / (2 * k - inside), rel=1e-12)
    assert values["region_relevance_rank_accuracy"] == pytest.approx(inside / k, rel=1e-12)
    assert values["region_pointing_game"] == pytest.approx(
        expected_overlap_over_tie_breaks(scores, region, 1), rel=1e-12)


def test_without_ties_the_kept_set_is_the_top_k():
    g = np.random.default_rng(8).permutation(25).reshape(1, 5, 5).astype(float)
    region = np.random.default_rng(9).random((1, 5, 5)) < 0.3
    region[0, 0, 0] = True
    k = region.sum()
    kept = np.zeros(25, bool)
    kept[np.argsort(g.ravel())[-k:]] = True
    mask = region.ravel()
    values = first_image(localise(g, region))
    assert values["region_iou"] == pytest.approx((kept & mask).sum() / (kept | mask).sum())
    assert values["region_iop"] == pytest.approx((kept & mask).sum() / k)


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
        assert result[name]["interval"] == ("clopper-pearson" if name == "pointing_game" else "student-t")


def test_pointing_game_interval_is_clopper_pearson_on_the_summed_hits():
    rng = np.random.default_rng(12)
    maps, region = rng.normal(size=(12, 5, 5)), rng.random((12, 5, 5)) < 0.3
    region[:, 0, 0] = True
    maps[:2] = 1.0  # two constant maps: fractional hits |L|/HW
    metric = localise(maps, region)
    hits = np.array(metric.per_image()["region_pointing_game"])
    assert 0 < hits[0] < 1
    result = metric.compute()["pointing_game"]
    k, n = hits.sum(), hits.size
    assert result["ci_low"] == pytest.approx(stats.beta.ppf(0.025, k, n - k + 1))
    assert result["ci_high"] == pytest.approx(stats.beta.ppf(0.975, k + 1, n - k))


def test_bad_options_are_audit_errors():
    with pytest.raises(AuditError, match="negative"):
        RegionLocalisation(blur_sigma=-1)
