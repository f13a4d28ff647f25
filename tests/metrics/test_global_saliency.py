import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from audit.errors import AuditError
from audit.metrics.global_saliency import (
    GlobalSaliency, levene_between_models, mean_on_mask, peak_share)
from metric_batches import build_batch

small_maps = arrays(np.float64, (6, 6), elements=st.floats(-100, 100, allow_subnormal=False))
small_masks = arrays(bool, (6, 6))


def test_mean_on_mask_by_hand():
    g = np.array([[1.0, -2.0], [3.0, 4.0]])
    assert mean_on_mask(g, np.array([[True, True], [False, False]])) == -0.5
    assert math.isnan(mean_on_mask(g, np.zeros((2, 2), bool)))


def test_peak_share_by_hand():
    g = np.arange(100, dtype=float).reshape(10, 10)  # distinct values 0..99
    mask = np.zeros((10, 10), bool)
    mask[9, 9] = True  # holds the largest value
    # 98th percentile (linear) of 0..99 is 97.02: pixels 98 and 99 are at or above it
    assert peak_share(g, mask, 98) == 0.5
    assert peak_share(g, mask, 50) == pytest.approx(1 / 50)


def test_peak_share_ties_share_the_leftover_by_expected_value():
    g = np.zeros((4, 4))
    g[0, 0] = 9.0
    g[1, :] = g[2, 0] = 5.0  # five pixels tied at 5
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = mask[1, 0] = mask[1, 1] = mask[3, 3] = True  # the 9, two 5s and a 0
    # percentile 75 of 16 pixels: k = 4; the 9 is kept, the five 5s share 3 pixels (3/5 each)
    assert peak_share(g, mask, 75) == pytest.approx((1 + 2 * 3 / 5) / 4)
    mask = np.zeros((4, 4), bool)
    mask[0, :3] = True
    assert peak_share(np.ones((4, 4)), mask, 98) == pytest.approx(3 / 16)  # constant map: chance


def test_peak_share_of_a_map_zero_off_a_few_strokes():
    # 28×28, n = 98: k = 16 peak pixels; the map is 0 except 10 stroke pixels, all on the
    # 50-pixel artefact. Keeping every pixel tied at the threshold (0) would give the area share.
    g = np.zeros((28, 28))
    mask = np.zeros((28, 28), bool)
    mask[:2, :25] = True
    g[0, :10] = np.arange(1.0, 11.0)
    # the 10 strokes are kept; the 774 zeros share the 6 left, 40 of them on the artefact
    assert peak_share(g, mask) == pytest.approx((10 + 6 * 40 / 774) / 16)
    assert peak_share(g, mask) > 0.6 > 50 / 784


@pytest.mark.parametrize(("shape", "percentile", "k"), [
    ((28, 28), 98, 16), ((10, 10), 98, 2), ((7, 9), 95, 4), ((16, 16), 90.5, 25),
    ((25, 40), 97.3, 27),  # (100 - 97.3) * 1000 / 100 is 27.00000000000003 in floats
])
def test_without_ties_the_peak_is_the_top_k_and_pfaus_percentile_set_within_one(shape, percentile, k):
    g = np.random.default_rng(3).permutation(shape[0] * shape[1]).reshape(shape).astype(float)
    mask = np.random.default_rng(4).random(shape) < 0.3
    top = np.zeros(g.size, bool)
    top[np.argsort(g.ravel())[-k:]] = True
    assert peak_share(g, mask, percentile) == pytest.approx(mask.ravel()[top].mean())
    at_or_above = g.ravel() >= np.percentile(g, percentile)  # the paper's P_n
    assert at_or_above.sum() in (k, k - 1) and not (at_or_above & ~top).any()


@settings(max_examples=40, deadline=None)
@given(small_maps, small_masks, st.floats(1e-3, 1e3))
def test_peak_share_unchanged_by_positive_scaling(g, mask, scale):
    assert peak_share(g * scale, mask) == peak_share(g, mask)


def test_z_scored_mean_equals_mean_of_z_scored_maps():
    rng = np.random.default_rng(1)
    maps = rng.normal(3.0, 2.0, size=(5, 7, 7)).astype(np.float32)
    artefact = rng.random((5, 7, 7)) < 0.3
    metric = GlobalSaliency()
    metric.update(build_batch(maps, artefact))
    all_pixels = maps.astype(np.float64)
    z_maps = (all_pixels - all_pixels.mean()) / all_pixels.std()
    expected = [z_maps[i][artefact[i]].mean() for i in range(5)]
    np.testing.assert_allclose(metric.per_image()["artefact_mean_saliency_z"], expected,
                               rtol=1e-9)
    result = metric.compute()
    assert result["normalisation"]["pixels"] == 5 * 49
    assert result["mean_saliency_z"]["overall"]["mean"] == pytest.approx(np.mean(expected))


def test_images_without_artefact_are_excluded_counted_but_still_normalise():
    maps = np.array([np.full((2, 2), 1.0), np.full((2, 2), 3.0), np.full((2, 2), 5.0)])
    artefact = np.ones((3, 2, 2), bool)
    artefact[1] = False
    metric = GlobalSaliency()
    metric.update(build_batch(maps, artefact, has_artefact=np.array([True, True, False])))
    result = metric.compute()
    assert result["excluded"] == {"no_artefact_mask": 1, "empty_artefact_mask": 1}
    assert result["n_scored"] == 1 and result["n_images"] == 3
    assert result["normalisation"]["pixel_mean"] == 3.0  # all three images count
    columns = metric.per_image()
    assert columns["artefact_mean_saliency"][0] == 1.0
    assert all(math.isnan(v) for v in columns["artefact_mean_saliency"][1:])
    assert columns["artefact_mean_saliency_z"][0] == pytest.approx((1 - 3) / np.std([1, 3, 5]))


def test_constant_maps_have_no_z_score_and_say_why():
    metric = GlobalSaliency()
    metric.update(build_batch(np.ones((2, 3, 3)), np.ones((2, 3, 3), bool)))
    result = metric.compute()
    assert result["mean_saliency_z"]["overall"] is None and "reason" in result["mean_saliency_z"]
    assert result["mean_saliency"]["overall"]["mean"] == 1.0
    assert result["peak_share"]["overall"]["mean"] == pytest.approx(1.0)


def test_absolute_option_uses_magnitude():
    maps = np.array([[[-4.0, 2.0], [0.0, 0.0]]])
    artefact = np.array([[[True, True], [False, False]]])
    signed, absolute = GlobalSaliency(), GlobalSaliency(absolute=True)
    for metric in (signed, absolute):
        metric.update(build_batch(maps, artefact))
    assert signed.per_image()["artefact_mean_saliency"] == [-1.0]
    assert absolute.per_image()["artefact_mean_saliency"] == [3.0]


def test_per_class_summaries_use_t_intervals_and_inter_class_variance():
    rng = np.random.default_rng(2)
    maps = rng.normal(size=(9, 5, 5))
    artefact = rng.random((9, 5, 5)) < 0.4
    artefact[:, 0, 0] = True
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, -1])
    predictions = np.array([0, 1, 1, 1, 2, 2, 2, 0, 0])
    metric = GlobalSaliency()
    metric.update(build_batch(maps, artefact, labels=labels, predictions=predictions))
    m = np.array(metric.per_image()["artefact_mean_saliency"])
    summary = metric.compute()["mean_saliency"]
    assert set(summary["by_label"]) == {"0", "1", "2"}
    class_means = [m[labels == c].mean() for c in (0, 1, 2)]
    for c in (0, 1, 2):
        values = m[labels == c]
        low, _ = stats.t.interval(0.95, values.size - 1, loc=values.mean(), scale=stats.sem(values))
        assert summary["by_label"][str(c)]["ci_low"] == pytest.approx(low)
    assert summary["by_prediction"]["0"]["n"] == 3
    assert summary["overall"]["n"] == 9
    assert summary["inter_class_variance"] == pytest.approx(np.var(class_means))


def test_levene_matches_scipy_and_drops_nan():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, 30), rng.normal(0, 3, 25)
    expected = stats.levene(a, b)
    result = levene_between_models(np.r_[a, np.nan], b)
    assert result["statistic"] == pytest.approx(expected.statistic)
    assert result["p_value"] == pytest.approx(expected.pvalue)
    assert result["n_a"] == 30
    mean_centred = levene_between_models(a, b, center="mean")
    assert mean_centred["statistic"] == pytest.approx(stats.levene(a, b, center="mean").statistic)
    assert levene_between_models(a[:1], b)["statistic"] is None


def test_percentile_outside_range_is_an_audit_error():
    with pytest.raises(AuditError, match="percentile"):
        GlobalSaliency(percentile=100)
