"""Bootstrap and seed intervals of fine-tuning comparisons, against scikit-learn and scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from audit.finetune.uncertainty import (
    bootstrap,
    direction,
    resampled_auroc,
    stratified_resamples,
    t_interval,
)
from audit.metrics.performance import auroc


def test_resamples_keep_every_class_at_its_size() -> None:
    labels = np.array([0] * 5 + [1] * 3 + [2] * 7)
    rows = stratified_resamples(labels, seed=0, resamples=50)
    assert rows.shape == (50, 15)
    for row in rows:
        assert np.bincount(labels[row]).tolist() == [5, 3, 7]
    assert np.array_equal(rows, stratified_resamples(labels, seed=0, resamples=50))  # seeded


@pytest.mark.parametrize("classes", [2, 3])
def test_resampled_auroc_is_sklearns_on_every_row(classes: int) -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, classes, 40)
    probabilities = rng.dirichlet(np.ones(classes), 40).round(1)  # rounded: many ties
    rows = stratified_resamples(labels, seed=2, resamples=30)
    expected = [auroc(labels[row], probabilities[row])[0] for row in rows]
    assert resampled_auroc(labels, probabilities, rows) == pytest.approx(expected, abs=1e-12)


def test_bootstrap_of_a_mean_matches_scipy() -> None:
    values = np.random.default_rng(3).exponential(size=200)
    ours = bootstrap(lambda rows: values[rows].mean(axis=1), np.zeros(200), seed=4, resamples=4000)
    theirs = stats.bootstrap((values,), np.mean, n_resamples=4000, method="percentile",
                             random_state=np.random.default_rng(5)).confidence_interval
    assert ours == pytest.approx((theirs.low, theirs.high), abs=0.02)


def test_t_interval_over_seeds_and_direction() -> None:
    values = [0.2, 0.3, 0.4]
    low, high = t_interval(values)
    assert (low, high) == pytest.approx(stats.t.interval(0.95, 2, loc=0.3, scale=stats.sem(values)))
    assert t_interval([0.2]) is None and t_interval([0.2, None]) is None
    assert direction((low, high)) == 1 and direction((-high, -low)) == -1 and direction((-0.1, 0.1)) == 0
    assert direction(None) == 0
