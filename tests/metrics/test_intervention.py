import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from audit.errors import AuditError
from audit.metrics.base import ImageColumns
from audit.metrics.intervention import SaliencyIntervention


def pairs(saliency, drop, first=0):
    """The per-image record ``SaliencyIntervention.update`` takes."""
    return ImageColumns([f"{first + i}.png" for i in range(len(saliency))], {"saliency": saliency, "drop": drop})


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(3, 40))
def test_matches_scipy_streamed_in_batches(seed, n):
    rng = np.random.default_rng(seed)
    saliency = rng.normal(size=n)
    drop = saliency * rng.normal() + rng.normal(size=n)
    drop[rng.random(n) < 0.2] = 0.5  # ties
    metric = SaliencyIntervention()
    for s in range(0, n, 7):
        metric.update(pairs(saliency[s:s + 7], drop[s:s + 7], s))
    result = metric.compute()
    if np.ptp(drop) == 0:
        assert result["spearman"] is None
        return
    expected = stats.spearmanr(saliency, drop)
    assert result["n"] == n
    assert result["spearman"] == pytest.approx(expected[0], abs=1e-12)
    assert result["p_value"] == pytest.approx(expected[1], rel=1e-9, abs=1e-300)


def test_monotone_relation_gives_one_and_nan_pairs_are_skipped():
    metric = SaliencyIntervention()
    metric.update(pairs(np.array([1.0, 2.0, math.nan, 3.0, 4.0]), np.array([0.1, 0.2, 0.3, math.nan, 0.9])))
    metric.update(pairs(np.array([5.0]), np.array([1.5]), 5))
    result = metric.compute()
    assert result["spearman"] == pytest.approx(1.0)
    assert result["n"] == 4 and result["skipped"] == 2
    assert "enrichment" in result["saliency"]


def test_undefined_cases_have_a_reason():
    few = SaliencyIntervention()
    few.update(pairs(np.array([1.0, 2.0]), np.array([0.1, 0.2])))
    assert few.compute()["spearman"] is None and "at least 3" in few.compute()["reason"]
    constant = SaliencyIntervention()
    constant.update(pairs(np.array([1.0, 2.0, 3.0]), np.array([0.2, 0.2, 0.2])))
    result = constant.compute()
    assert result["spearman"] is None and result["p_value"] is None
    assert "drop" in result["reason"]


def test_shapes_must_match():
    with pytest.raises(AuditError, match="drop has shape"):
        SaliencyIntervention().update(pairs(np.zeros(3), np.zeros(2)))
