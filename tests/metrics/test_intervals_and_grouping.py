import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from audit.metrics.grouping import by_group, inter_class_variance, summarise
from audit.metrics.intervals import json_number, mean_interval, proportion_interval
from audit.metrics.running import RunningMoments


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=40))
def test_mean_interval_matches_scipy_t_interval(values):
    values = np.asarray(values)
    result = mean_interval(values)
    assert result["n"] == values.size
    assert result["mean"] == pytest.approx(values.mean(), abs=1e-9)
    if values.std() == 0:
        assert result["ci_low"] == pytest.approx(result["mean"])
        return
    low, high = stats.t.interval(0.95, values.size - 1, loc=values.mean(), scale=stats.sem(values))
    assert result["ci_low"] == pytest.approx(low, rel=1e-9, abs=1e-9)
    assert result["ci_high"] == pytest.approx(high, rel=1e-9, abs=1e-9)


def test_mean_interval_other_confidence_is_narrower():
    values = np.array([1.0, 2.0, 4.0, 8.0])
    wide, narrow = mean_interval(values, 0.99), mean_interval(values, 0.5)
    assert wide["ci_low"] < narrow["ci_low"] < narrow["ci_high"] < wide["ci_high"]


def test_mean_interval_drops_nan_and_explains_missing_values():
    assert mean_interval(np.array([1.0, np.nan, 3.0]))["n"] == 2
    empty = mean_interval(np.array([np.nan]))
    assert empty["mean"] is None and empty["n"] == 0 and "reason" in empty
    single = mean_interval(np.array([2.5]))
    assert single["mean"] == 2.5 and single["ci_low"] is None and "reason" in single


@pytest.mark.parametrize(("hits", "n"), [(0, 1), (0, 30), (3, 30), (17, 40), (29, 30), (30, 30), (250, 1000)])
@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_proportion_interval_is_scipys_clopper_pearson(hits, n, confidence):
    values = np.r_[np.ones(hits), np.zeros(n - hits), np.nan]  # the NaN is dropped
    result = proportion_interval(values, confidence)
    expected = stats.binomtest(hits, n).proportion_ci(confidence, method="exact")
    assert result["n"] == n and result["mean"] == pytest.approx(hits / n)
    assert result["ci_low"] == pytest.approx(expected.low, rel=1e-9, abs=1e-12)
    assert result["ci_high"] == pytest.approx(expected.high, rel=1e-9, abs=1e-12)
    assert result["interval"] == "clopper-pearson"


def test_zero_of_thirty_changed_is_not_certain():
    # by hand: with no success the 95% Clopper–Pearson bound solves (1 − p)^30 = 0.025
    changed = proportion_interval(np.zeros(30))
    assert changed["mean"] == 0.0 and changed["ci_low"] == 0.0
    assert changed["ci_high"] == pytest.approx(1 - 0.025 ** (1 / 30))  # 0.1157: crosses 10%
    unchanged = proportion_interval(np.ones(30))
    assert unchanged["ci_low"] == pytest.approx(0.025 ** (1 / 30)) and unchanged["ci_high"] == 1.0
    flat = mean_interval(np.zeros(30))  # what the t-interval said: 0%–0%
    assert flat["ci_low"] == flat["ci_high"] == 0.0


def test_fractional_hits_lie_between_the_neighbouring_whole_counts():
    hits = np.r_[np.ones(6), np.zeros(13), 0.25, 0.5]  # 6.75 hits of 21
    result = proportion_interval(hits)
    below = stats.binomtest(6, 21).proportion_ci(method="exact")
    above = stats.binomtest(7, 21).proportion_ci(method="exact")
    assert result["mean"] == pytest.approx(6.75 / 21)
    assert below.low < result["ci_low"] < above.low
    assert below.high < result["ci_high"] < above.high


def test_proportion_interval_explains_missing_values():
    empty = proportion_interval(np.array([np.nan]))
    assert empty["mean"] is None and empty["ci_low"] is None and "reason" in empty
    assert mean_interval(np.array([1.0, 2.0]))["interval"] == "student-t"


def test_json_number_turns_non_finite_into_none():
    assert json_number(np.float32(1.5)) == 1.5 and type(json_number(np.float32(1.5))) is float
    assert json_number(math.nan) is None and json_number(math.inf) is None


def test_by_group_skips_unknown_labels_and_summarises_each_class():
    values = np.array([1.0, 2.0, 3.0, 10.0, 20.0])
    groups = np.array([0, 0, 1, -1, 1])
    result = by_group(values, groups)
    assert set(result) == {"0", "1"}
    assert result["0"]["mean"] == 1.5 and result["1"]["mean"] == 11.5


def test_inter_class_variance_is_population_variance_of_class_means():
    summary = summarise(np.array([1.0, 3.0, 10.0, 12.0, 5.0]), np.array([0, 0, 1, 1, 2]),
                        np.zeros(5, int))
    assert summary["inter_class_variance"] == pytest.approx(np.var([2.0, 11.0, 5.0]))
    assert "inter_class_variance_reason" not in summary
    assert inter_class_variance({"0": {"mean": 1.0}}) is None
    one_class = summarise(np.array([1.0, 3.0]), np.zeros(2, int), np.zeros(2, int))
    assert one_class["inter_class_variance"] is None and one_class["inter_class_variance_reason"]


@pytest.mark.parametrize("chunks", [1, 3, 7])
def test_running_moments_match_numpy_over_all_values(chunks):
    rng = np.random.default_rng(0)
    values = rng.normal(1e4, 2.0, size=200)  # large offset: no sum-of-squares cancellation
    moments = RunningMoments()
    for part in np.array_split(values, chunks):
        moments.add(part)
    assert moments.count == 200
    assert moments.mean == pytest.approx(values.mean(), rel=1e-13)
    assert moments.std == pytest.approx(values.std(), rel=1e-9)


def test_running_moments_empty_is_nan():
    moments = RunningMoments()
    moments.add(np.array([]))
    assert moments.count == 0 and math.isnan(moments.std)
