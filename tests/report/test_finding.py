"""The finding (results.json ``finding``) follows the stated thresholds, with binomial intervals."""

from __future__ import annotations

from typing import Any

import pytest
from scipy import stats

from audit.report.finding import ENRICHMENT, GAP, finding, finding_of, flip_rate


def unchanged_share(changed: int, n: int) -> dict[str, Any]:
    """The ablation's unchanged share as ``ArtefactAblation.compute`` reports it, with the
    Clopper–Pearson interval from scipy (independent of the audit's own interval code)."""
    ci = stats.binomtest(n - changed, n).proportion_ci(confidence_level=0.95, method="exact")
    return {"n": n, "mean": (n - changed) / n, "ci_low": ci.low, "ci_high": ci.high}


def method(low: float, high: float, sanity: str = "passed", spearman: float = 0.1) -> dict[str, Any]:
    check = {"status": sanity, "spearman": spearman, "ci95": [spearman - 0.05, spearman + 0.05], "threshold": 0.5}
    if sanity == "not run":
        check.update(spearman=None, ci95=None, reason="skipped (--randomization-images 0)")
    return {"artefact": {"enrichment": {"overall": (low + high) / 2, "ci95": [low, high]}}, "sanity": check}


def results(changed: int | None, methods: dict[str, Any] | None = None, n: int = 50,
            present: float = 0.9, absent: float | None = None) -> dict[str, Any]:
    unchanged = unchanged_share(changed, n) if changed is not None else {"n": 0, "mean": None, "reason": "no image with a defined value"}
    excluded = {"no_artefact_mask": 0 if changed is not None else 3, "empty_artefact_mask": 0}
    return {
        "target": "predicted",
        "ablation": {"artefact": {"unchanged": unchanged, "delta_probability": {"mean": -0.2}, "excluded": excluded}},
        "methods": methods or {},
        "performance": {"by_artefact": {"present": {"accuracy": present}, "absent": {"accuracy": absent, "reason": "no labelled image"}}},
    }


def test_flip_rate_and_interval_come_from_the_unchanged_share() -> None:
    flips = flip_rate(results(10, n=50))
    expected = stats.binomtest(10, 50).proportion_ci(method="exact")
    assert flips["value"] == pytest.approx(0.2) and flips["n"] == 50
    assert flips["ci95"] == pytest.approx([expected.low, expected.high])
    assert flip_rate(results(None))["value"] is None and flip_rate(results(None))["reason"] == "no image could be ablated (no artefact mask: 3)"


def test_none_of_30_changed_cannot_rule_out_reliance() -> None:
    # 0 of 30: the exact interval is 0–11.6% (1 − 0.025^(1/30) = 0.1157), which crosses 10%.
    result = finding(results(0, n=30))
    assert result["evidence"]["flip_rate"]["ci95"] == pytest.approx([0.0, 1 - 0.025 ** (1 / 30)])
    assert (result["level"], result["code"]) == ("uncertain", "reliance_uncertain")
    assert result["sentence"] == "Use of the artefact is not ruled out (the interval reaches 10%)"
    assert "changes 0.0% of the predictions (95% CI 0.0%–11.6%, n = 30" in result["detail"]
    assert "crosses the 10% threshold" in result["detail"]
    # 0 of 60: 0–6.0%, all below 10%: now there is no evidence of reliance.
    assert finding(results(0, n=60))["code"] == "no_evidence"


def test_uses_only_when_the_whole_interval_reaches_the_threshold() -> None:
    uses = finding(results(30, {"gradient": method(1.0, 1.2)}, n=100))  # 30% (21.3–40.1%)
    assert (uses["level"], uses["code"], uses["sentence"]) == ("uses", "uses_artefact", "The model uses the artefact")
    assert "No saliency method concentrates" in uses["detail"]
    near = finding(results(15, n=100))  # 15% (8.6–23.5%): the estimate is above 10%, the interval is not
    assert near["code"] == "reliance_uncertain" and near["sentence"] == "The model may use the artefact (not confirmed at 95%)"


def test_saliency_without_reliance_is_a_warning_and_the_ci_bound_is_what_counts() -> None:
    salient = finding(results(1, {"gradient": method(ENRICHMENT + 0.1, ENRICHMENT + 1)}, n=200))
    assert (salient["level"], salient["code"]) == ("salient", "salient_not_relied_on")
    assert "1 of 1 methods" in salient["detail"]
    assert finding(results(1, {"gradient": method(ENRICHMENT - 0.1, ENRICHMENT + 3)}, n=200))["code"] == "no_evidence"


def test_a_method_that_fails_the_sanity_check_is_not_evidence() -> None:
    methods = {"gradient": method(0.9, 1.1), "occlusion": method(24.0, 26.0, sanity="failed", spearman=0.99)}
    result = finding(results(1, methods, n=200))
    assert result["code"] == "no_evidence"  # occlusion alone would make it "salient_not_relied_on"
    occlusion = result["evidence"]["methods"]["occlusion"]
    assert occlusion["counted"] is False and occlusion["salient"] is False and "failed the randomisation sanity check" in occlusion["reason"]
    assert "1 of" not in result["detail"] and "Left out: occlusion (enrichment 25.000), which failed" in result["detail"]
    assert "occlusion 25" not in result["detail"]  # not listed among the enrichments that count


def test_a_method_whose_check_did_not_run_counts_and_says_so() -> None:
    result = finding(results(1, {"gradient": method(3.0, 4.0, sanity="not run")}, n=200))
    assert result["code"] == "salient_not_relied_on"
    assert "did not run for gradient" in result["detail"]


def test_without_ablation_saliency_alone_is_reported_as_such() -> None:
    only_saliency = finding(results(None, {"gradient": method(3.0, 4.0)}))
    assert (only_saliency["level"], only_saliency["code"]) == ("salient", "salient_not_tested")
    assert "No artefact ablation could be run" in only_saliency["detail"]
    assert only_saliency["evidence"]["flip_rate"]["reason"] == "no image could be ablated (no artefact mask: 3)"
    assert finding(results(None, {"gradient": method(1.0, 1.2)}))["code"] == "not_tested"
    nothing = finding(results(None))
    assert (nothing["level"], nothing["code"]) == ("unknown", "not_measurable")


def test_performance_gap_is_stated_at_the_threshold_and_a_missing_side_has_a_reason() -> None:
    assert "a gap of" in finding(results(1, n=200, present=0.9, absent=0.9 - GAP - 0.01))["detail"]
    assert "similar" in finding(results(1, n=200, present=0.9, absent=0.9 - GAP / 2))["detail"]
    gap = finding(results(1, n=200))["evidence"]["performance_gap"]
    assert gap["gap"] is None and gap["reason"] == "no accuracy on the images without the artefact (no labelled image)"


def test_results_written_without_a_finding_or_sanity_get_them_from_the_numbers() -> None:
    old = results(40, n=100)
    old["methods"] = {"occlusion": {"artefact": {"enrichment": {"overall": 25.0, "ci95": [24.0, 26.0]}},
                                    "randomization": {"cascading": [{"layer": "fc", "spearman": 0.99, "ci95": [0.98, 0.995], "n": 8}]}}}
    computed = finding_of(old)
    assert computed["code"] == "uses_artefact" and computed["evidence"]["methods"]["occlusion"]["sanity"] == "failed"
    stored = {**old, "finding": {**computed, "code": "stored"}}
    assert finding_of(stored)["code"] == "stored"
