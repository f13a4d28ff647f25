import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from audit.errors import AuditError
from audit.metrics.aurrac import Aurrac, downsample_curve, response_rate_curve
from metric_batches import build_batch


def aurrac_of(scores, correct, **kwargs):
    """Images whose mean artefact saliency m(X) equals the given score (constant maps)."""
    scores = np.asarray(scores, dtype=float)
    n = scores.size
    maps = np.broadcast_to(scores[:, None, None], (n, 3, 3))
    labels = np.ones(n, int)
    predictions = np.where(np.asarray(correct, bool), 1, 0)
    metric = Aurrac(**kwargs)
    metric.update(build_batch(maps, np.ones((n, 3, 3), bool), labels=labels,
                              predictions=predictions))
    return metric


def test_curve_and_area_by_hand():
    result = aurrac_of([1, 2, 3, 4], [1, 1, 0, 0]).compute()
    assert result["curve"] == {"r": [0.25, 0.5, 0.75, 1.0],
                               "accuracy": [1, 1, pytest.approx(2 / 3), 0.5]}
    assert result["value"] == pytest.approx((1 + 1 + 2 / 3 + 1 / 2) / 4)
    assert result["accuracy"] == 0.5
    expected = stats.binomtest(2, 4).proportion_ci(method="exact")
    assert result["accuracy_ci95"] == pytest.approx([expected.low, expected.high])
    assert result["difference"] == pytest.approx(result["value"] - 0.5)
    # four images: the deciles fall on k = 1, 1, 2, 2, 2, 3, 3, 4, 4, 4, so four points
    assert result["kendall_points"] == 4
    assert result["kendall_tau"] == pytest.approx(stats.kendalltau([1, 2, 3, 4], [1, 1, 2 / 3, 1 / 2]).statistic)


def test_area_equals_harmonic_percentile_rank_weighting():
    rng = np.random.default_rng(5)
    scores, correct = rng.permutation(50).astype(float), rng.random(50) < 0.6
    _, accuracy = response_rate_curve(scores, correct)
    rank = np.argsort(np.argsort(scores)) + 1  # 1 = least artefact-salient
    harmonic = np.r_[0.0, np.cumsum(1 / np.arange(1, 51))]
    weights = harmonic[50] - harmonic[rank - 1]
    assert weights.sum() == pytest.approx(50)
    assert accuracy.mean() == pytest.approx(np.mean(correct * weights))


def test_ties_average_over_every_order_of_tied_images():
    scores = np.array([2.0, 1.0, 2.0, 3.0, 2.0, 1.0])
    correct = np.array([1, 0, 0, 1, 1, 1], bool)
    curves = [correct[list(order)].cumsum() / np.arange(1, 7)
              for order in itertools.permutations(range(6))
              if np.all(np.diff(scores[list(order)]) >= 0)]
    _, accuracy = response_rate_curve(scores, correct)
    np.testing.assert_allclose(accuracy, np.mean(curves, axis=0))


def test_constant_scores_give_a_flat_curve_and_no_tau():
    result = aurrac_of([5, 5, 5, 5], [1, 0, 0, 1]).compute()
    assert result["value"] == pytest.approx(0.5) and result["difference"] == pytest.approx(0)
    assert result["kendall_tau"] is None and "kendall_reason" in result


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 30), st.integers(1, 30), st.randoms(use_true_random=False))
def test_failures_most_artefact_salient_give_aurrac_above_accuracy(n_right, n_wrong, rnd):
    scores = [rnd.random() for _ in range(n_right)] + [1 + rnd.random() for _ in range(n_wrong)]
    correct = [True] * n_right + [False] * n_wrong
    result = aurrac_of(scores, correct).compute()
    assert result["value"] > result["accuracy"]
    assert result["kendall_tau"] < 0


@pytest.mark.parametrize("n", [40, 37, 10, 1000])
def test_kendall_tau_is_over_the_deciles_of_the_curve(n):
    rng = np.random.default_rng(6)
    scores, correct = rng.normal(size=n), rng.random(n) < 0.7
    result = aurrac_of(scores, correct).compute()
    _, accuracy = response_rate_curve(scores, correct)
    k = [math.ceil(d * n / 10) for d in range(1, 11)]  # Pfau et al., Fig. 2: 10th, 20th, ... percentile
    expected = stats.kendalltau(np.arange(10), accuracy[np.array(k) - 1])
    assert result["kendall_points"] == 10
    assert result["kendall_tau"] == pytest.approx(expected.statistic)
    assert result["kendall_p_value"] == pytest.approx(expected.pvalue)


def test_a_curve_falling_at_every_decile_has_the_exact_ten_point_p_value():
    # decile j (images 10j..10j+9 by score) holds 10 − j correct images: acc = 1 − j/20 at the
    # j-th decile, strictly falling. Ten points, no ties: τ = −1, exact P = 2/10!.
    scores = np.arange(100.0)
    correct = np.concatenate([np.arange(10) < 10 - j for j in range(10)])
    result = aurrac_of(scores, correct).compute()
    assert result["kendall_tau"] == pytest.approx(-1.0)
    assert result["kendall_p_value"] == pytest.approx(2 / math.factorial(10))
    everything = stats.kendalltau(*response_rate_curve(scores, correct))
    assert everything.pvalue < 1e-12 < result["kendall_p_value"]  # over all 100 points: overconfident


def test_one_image_has_no_tau_and_says_why():
    result = aurrac_of([1.0], [True]).compute()
    assert result["value"] == 1.0 and result["kendall_points"] == 1
    assert result["kendall_tau"] is None and result["kendall_p_value"] is None
    assert "single" in result["kendall_reason"]


def test_only_labelled_images_with_an_artefact_mask_count():
    maps = np.arange(5, dtype=float)[:, None, None] * np.ones((5, 2, 2))
    artefact = np.ones((5, 2, 2), bool)
    artefact[1] = False
    metric = Aurrac()
    metric.update(build_batch(maps, artefact, labels=np.array([0, 0, -1, 0, 1]),
                              has_artefact=np.array([True, True, True, False, True])))
    result = metric.compute()
    assert result["excluded"] == {"no_artefact_mask": 1, "empty_artefact_mask": 1, "unlabelled": 1}
    assert result["n"] == 2 and result["accuracy"] == 0.5
    ranks = metric.per_image()["aurrac_percentile_rank"]
    assert ranks[0] == 0.5 and ranks[4] == 1.0 and all(math.isnan(v) for v in ranks[1:4])


def test_no_eligible_image_explains():
    metric = Aurrac()
    metric.update(build_batch(np.ones((2, 2, 2)), np.ones((2, 2, 2), bool),
                              labels=np.array([-1, -1])))
    result = metric.compute()
    assert result["value"] is None and "reason" in result


def test_peak_score_orders_by_peak_share():
    maps = np.broadcast_to(np.arange(100.0).reshape(10, 10), (2, 10, 10))  # peaks: 98, 99
    artefact = np.zeros((2, 10, 10), bool)
    artefact[0, 9, 9] = True  # image 0: half of the peak pixels on the artefact
    artefact[1, 0, 0] = True  # image 1: none
    metric = Aurrac(score="peak")
    metric.update(build_batch(maps, artefact, labels=np.array([1, 0])))
    assert metric.per_image()["aurrac_percentile_rank"] == [1.0, 0.5]
    assert metric.compute()["curve"]["accuracy"] == [1.0, 0.5]


def test_absolute_option_orders_by_magnitude():
    signed, absolute = aurrac_of([-3, 1], [True, False]), aurrac_of([-3, 1], [True, False],
                                                                   absolute=True)
    assert signed.compute()["curve"]["accuracy"] == [1.0, 0.5]
    assert absolute.compute()["curve"]["accuracy"] == [0.0, 0.5]


def test_curve_is_downsampled_to_at_most_101_points_keeping_the_ends():
    r = np.arange(1, 1001) / 1000
    accuracy = np.linspace(1, 0, 1000)
    curve = downsample_curve(r, accuracy)
    assert len(curve["r"]) <= 101
    assert curve["r"][0] == 0.001 and curve["r"][-1] == 1.0
    np.testing.assert_allclose(curve["accuracy"], np.interp(curve["r"], r, accuracy))
    short = downsample_curve(r[:7], accuracy[:7])
    assert short["r"] == r[:7].tolist()


def test_unknown_score_is_an_audit_error():
    with pytest.raises(AuditError, match="unknown"):
        Aurrac(score="max")
