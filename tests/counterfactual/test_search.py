"""The λ search rules against hand-checked prediction sequences (a fake prediction function)."""

from __future__ import annotations

import numpy as np
import pytest

from audit.counterfactual.search import BOUND, FLOOR, MOVED, PIXELS, TURNED, rule, search
from audit.errors import AuditError


def fake(curves, change=lambda lam: 0.0 * lam, calls=None):
    """evaluate() for images whose prediction at λ is curves[i](λ); records each call's indices."""

    def evaluate(indices, lam):
        if calls is not None:
            calls.append((indices.tolist(), lam.tolist()))
        return np.array([curves[i](l) for i, l in zip(indices, lam)]), np.array([change(l) for l in lam])

    return evaluate


def monotone(lam):
    return max(0.9 + 0.004 * lam, 0.0)


def test_monotone_paper_stops_at_the_first_drop_over_0_3():
    # 0.9 - 0.3 = 0.6: p(-70) = 0.62 keeps going, p(-80) = 0.58 stops.
    calls = []
    result = search(rule("paper"), np.array([0.9]), fake([monotone], calls=calls))
    assert result.bound.tolist() == [-80.0] and result.reason == [MOVED]
    assert result.prediction[0] == pytest.approx(0.58)
    assert [lam for _, (lam,) in calls] == [-10.0 * k for k in range(1, 9)]


def test_monotone_public_steps_minus_one_then_minus_ten_and_stops_at_0_15():
    # λ = -1 … -9, -10, -20, -30 (p 0.78, drop 0.12), -40 (p 0.74, drop 0.16 > 0.15).
    calls = []
    result = search(rule("public"), np.array([0.9]), fake([monotone], calls=calls))
    assert result.bound.tolist() == [-40.0] and result.reason == [MOVED]
    assert [lam for _, (lam,) in calls] == [-1.0 * k for k in range(1, 11)] + [-20.0, -30.0, -40.0]


TABLE = {0: 0.9, -10: 0.85, -20: 0.8, -30: 0.805, -40: 0.83, -50: 0.2}


def test_a_prediction_that_rises_again_stops_the_search_where_it_rose():
    curve = lambda lam: TABLE[int(lam)]  # noqa: E731
    # paper: the rise 0.005 at -30 is within the 0.01 tolerance; the rise 0.025 at -40 is not.
    assert search(rule("paper"), np.array([0.9]), fake([curve])).bound.tolist() == [-40.0]
    strict = search(rule("paper", turn_tolerance=0.0), np.array([0.9]), fake([curve]))
    assert strict.bound.tolist() == [-30.0] and strict.reason == [TURNED]


def test_public_rule_stops_at_the_first_rise():
    values = {0: 0.9, -1: 0.89, -2: 0.88, -3: 0.885}
    result = search(rule("public"), np.array([0.9]), fake([lambda lam: values[int(lam)]]))
    assert result.bound.tolist() == [-3.0] and result.reason == [TURNED]


@pytest.mark.parametrize("name, bound", [("paper", -1000.0), ("public", -1000.0)])
def test_a_prediction_that_never_moves_runs_to_the_bound(name, bound):
    result = search(rule(name), np.array([0.7]), fake([lambda lam: 0.7]))
    assert result.bound.tolist() == [bound] and result.reason == [BOUND] and result.prediction[0] == 0.7


def test_floor_pixels_and_upper_search():
    under_floor = search(rule("paper"), np.array([0.03]), fake([lambda lam: 0.03]))
    assert under_floor.bound.tolist() == [0.0] and under_floor.reason == [FLOOR]
    too_much = search(rule("paper", max_pixel_change=0.25), np.array([0.9]), fake([lambda lam: 0.9], change=lambda lam: -lam / 100))
    assert too_much.bound.tolist() == [-30.0] and too_much.reason == [PIXELS]
    # upward: 0.9 → 0.93 → 0.96 (rise 0.06 > 0.05) at λ = 20
    up = search(rule("paper"), np.array([0.9]), fake([lambda lam: 0.9 + 0.003 * lam]), sign=1.0)
    assert up.bound.tolist() == [20.0] and up.reason == [MOVED]


def test_images_are_searched_in_lock_step_with_their_own_results():
    calls = []
    curves = [monotone, lambda lam: TABLE[int(lam)]]
    together = search(rule("paper", turn_tolerance=0.0), np.array([0.9, 0.9]), fake(curves, calls=calls))
    assert together.bound.tolist() == [-80.0, -30.0]
    assert calls[0][0] == [0, 1] and calls[3][0] == [0]  # image 1 stopped after its third step
    alone = search(rule("paper", turn_tolerance=0.0), np.array([0.9]), fake([monotone]))
    assert alone.bound.tolist() == [-80.0]


def test_bad_thresholds_and_names():
    with pytest.raises(AuditError, match="rule 'nope'"):
        rule("nope")
    with pytest.raises(AuditError, match="drop"):
        rule("paper", drop=1.5)
    with pytest.raises(AuditError, match="step"):
        rule("public", step=0.0)
