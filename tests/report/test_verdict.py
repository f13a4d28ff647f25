"""The first page's finding follows the stated thresholds."""

from __future__ import annotations

from typing import Any

from audit.report.pdf.verdict import ENRICHMENT, FLIP_RATE, GAP, finding, flip_rate


def results(unchanged: float | None, enrichment_ci: tuple[float, float] | None, present: float = 0.9, absent: float | None = None) -> dict[str, Any]:
    ablation = {"unchanged": {"n": 50, "mean": unchanged, "ci_low": unchanged - 0.05, "ci_high": min(1.0, unchanged + 0.05)}} if unchanged is not None else {"unchanged": {"n": 0, "mean": None}}
    methods = {}
    if enrichment_ci is not None:
        low, high = enrichment_ci
        methods["gradient"] = {"artefact": {"enrichment": {"overall": (low + high) / 2, "ci95": [low, high]}}}
    return {
        "ablation": {"artefact": ablation},
        "methods": methods,
        "performance": {"by_artefact": {"present": {"accuracy": present}, "absent": {"accuracy": absent}}},
    }


def test_flip_rate_and_interval_come_from_the_unchanged_share() -> None:
    flips, ci, n = flip_rate(results(0.8, None))
    assert abs(flips - 0.2) < 1e-12 and ci is not None and abs(ci[0] - 0.15) < 1e-12 and abs(ci[1] - 0.25) < 1e-12 and n == 50


def test_reliance_decides_use() -> None:
    uses = finding(results(1 - FLIP_RATE, (1.0, 1.2)))
    assert uses.level == "uses" and "10.0% of the predictions" in uses.detail
    assert "No saliency method concentrates" in uses.detail


def test_saliency_without_reliance_is_a_warning() -> None:
    salient = finding(results(1 - FLIP_RATE / 2, (ENRICHMENT + 0.1, ENRICHMENT + 1)))
    assert salient.level == "salient" and "1 of 1 methods" in salient.detail


def test_neither_is_no_evidence_and_the_ci_bound_is_what_counts() -> None:
    assert finding(results(0.99, (ENRICHMENT - 0.1, ENRICHMENT + 3))).level == "none"


def test_without_ablation_saliency_alone_is_reported_as_such() -> None:
    only_saliency = finding(results(None, (3.0, 4.0)))
    assert only_saliency.level == "salient" and "No artefact ablation could be run" in only_saliency.detail
    assert finding(results(None, None)).level == "unknown"


def test_performance_gap_is_stated_at_the_threshold() -> None:
    assert "a gap of" in finding(results(0.99, None, present=0.9, absent=0.9 - GAP - 0.01)).detail
    assert "similar" in finding(results(0.99, None, present=0.9, absent=0.9 - GAP / 2)).detail
