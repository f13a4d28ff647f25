"""The gate section on real results: outcomes, unknown keys, null metrics and --allow-missing."""

from __future__ import annotations

import pytest

from audit.errors import AuditError
from audit.report.gate import evaluate_gate

ENRICHMENT = "methods.gradient.artefact.enrichment.overall"


def test_enrichment_gate_blocks_the_biased_model_only(results: dict[str, dict]) -> None:
    gates = {name: evaluate_gate(r, [f"{ENRICHMENT} > 2.0", "performance.auc < 0.8"], False) for name, r in results.items()}
    assert [c["outcome"] for c in gates["biased"]["checks"]] == ["fail", "fail"]
    assert [c["outcome"] for c in gates["unbiased"]["checks"]] == ["pass", "pass"]
    assert (gates["biased"]["passed"], gates["unbiased"]["passed"]) == (False, True)
    check = gates["biased"]["checks"][0]
    value = results["biased"]["methods"]["gradient"]["artefact"]["enrichment"]["overall"]
    assert check == {
        "expression": f"{ENRICHMENT} > 2.0", "key": ENRICHMENT, "operator": ">", "threshold": 2.0,
        "value": value, "outcome": "fail", "reason": f"{value:.6g} > 2 holds",
    }
    assert gates["unbiased"]["checks"][0]["reason"].endswith("> 2 does not hold")


@pytest.mark.parametrize(
    ("expression", "closest"),
    [
        ("methods.gradient.artefact.enrichmnt.overall > 2", ENRICHMENT),
        ("performance.acuracy < 0.9", "performance.accuracy"),
        ("methods.gradiant.region.iou.mean < 0.1", "methods.gradient.region.iou.mean"),
    ],
)
def test_unknown_key_names_the_closest_valid_key(results: dict[str, dict], expression: str, closest: str) -> None:
    with pytest.raises(AuditError) as error:
        evaluate_gate(results["biased"], [expression], False)
    assert str(error.value) == (
        f"gate check {expression!r}: no key {expression.split()[0]!r} in the results; the closest valid key is {closest!r}"
    )


def test_a_group_is_not_a_value_and_text_compares_with_text_only(results: dict[str, dict]) -> None:
    with pytest.raises(AuditError, match=f"is a group of values, not a number; did you mean '{ENRICHMENT}'"):
        evaluate_gate(results["biased"], ["methods.gradient.artefact.enrichment > 2"], False)
    with pytest.raises(AuditError, match="did you mean 'finding.code'"):
        evaluate_gate(results["biased"], ['finding == "uses_artefact"'], False)
    with pytest.raises(AuditError) as error:
        evaluate_gate(results["biased"], ["model.format == 1"], False)
    assert str(error.value) == ("gate check 'model.format == 1': model.format is the text \"onnx\"; compare it with == or != "
                                "and a quoted string, e.g. 'model.format == \"onnx\"'")
    with pytest.raises(AuditError, match="performance.auc is the number .*; compare it with a number"):
        evaluate_gate(results["biased"], ['performance.auc == "0.8"'], False)


def test_the_finding_gates_the_biased_model_only(results: dict[str, dict]) -> None:
    expressions = ['finding.code == "uses_artefact"', "finding.level != 'none'"]
    gates = {name: evaluate_gate(r, expressions, False) for name, r in results.items()}
    assert results["biased"]["finding"]["code"] == "uses_artefact"
    assert [c["outcome"] for c in gates["biased"]["checks"]] == ["fail", "fail"]
    assert gates["biased"]["checks"][0] == {
        "expression": expressions[0], "key": "finding.code", "operator": "==", "threshold": "uses_artefact",
        "value": "uses_artefact", "outcome": "fail", "reason": '"uses_artefact" == "uses_artefact" holds',
    }
    unbiased = results["unbiased"]["finding"]
    assert unbiased["code"] != "uses_artefact" and gates["unbiased"]["checks"][0]["outcome"] == "pass"
    assert gates["unbiased"]["checks"][1]["outcome"] == ("pass" if unbiased["level"] == "none" else "fail")


def test_null_metric_fails_with_its_reason_unless_allowed_missing(results: dict[str, dict]) -> None:
    # every validation image carries the box: the artefact-absent subset has no AUC
    expression = "performance.by_artefact.absent.auc < 0.8"
    failed = evaluate_gate(results["unbiased"], [expression], allow_missing=False)
    assert failed["passed"] is False
    assert failed["checks"][0]["value"] is None and failed["checks"][0]["outcome"] == "fail"
    assert failed["checks"][0]["reason"] == (
        "performance.by_artefact.absent.auc has no value in results.json: no labelled images; fails (--allow-missing skips it)"
    )
    skipped = evaluate_gate(results["unbiased"], [expression, "performance.auc < 0.8"], allow_missing=True)
    assert skipped["passed"] is True and skipped["allow_missing"] is True
    assert [c["outcome"] for c in skipped["checks"]] == ["skipped", "pass"]
    assert skipped["checks"][0]["reason"].endswith("no labelled images; skipped (allow missing)")


def test_allow_missing_does_not_hide_a_real_failure(results: dict[str, dict]) -> None:
    gate = evaluate_gate(results["biased"], ["performance.by_artefact.absent.auc < 0.8", "performance.auc < 0.8"], True)
    assert [c["outcome"] for c in gate["checks"]] == ["skipped", "fail"] and gate["passed"] is False


@pytest.mark.parametrize(
    ("results", "reason"),
    [
        ({"m": {"kendall_tau": None, "kendall_reason": "flat curve", "reason": "other"}}, "flat curve"),
        ({"m": {"kendall_tau": None, "kendall_tau_reason": "own", "kendall_reason": "shared"}}, "own"),
        ({"m": {"x": {"kendall_tau": None}}, "reason": "outer"}, "outer"),
    ],
)
def test_null_reason_is_the_nearest_one(results: dict, reason: str) -> None:
    key = "m.kendall_tau" if "kendall_tau" in results["m"] else "m.x.kendall_tau"
    check = evaluate_gate(results, [f"{key} > 0"], False)["checks"][0]
    assert check["reason"] == f"{key} has no value in results.json: {reason}; fails (--allow-missing skips it)"


def test_null_without_a_reason_still_fails_clearly() -> None:
    check = evaluate_gate({"m": {"tau": None}}, ["m.tau > 0"], False)["checks"][0]
    assert check["reason"] == "m.tau has no value in results.json; fails (--allow-missing skips it)"


def test_delta_values_and_missing_sides() -> None:
    base = {"methods": {"a": {"e": 1.0}, "b": {"e": None, "reason": "no masks"}}, "p": 0.5}
    new = {"methods": {"a": {"e": 3.5}, "b": {"e": 2.0}, "c": {"e": 1.0}}, "p": 0.5}
    gate = evaluate_gate(new, ["delta.methods.a.e > 2", "delta.methods.b.e > 2", "delta.methods.c.e > 2", "p < 1"], False, base=base)
    assert [(c["value"], c["outcome"]) for c in gate["checks"]] == [(2.5, "fail"), (None, "fail"), (None, "fail"), (0.5, "fail")]
    assert (gate["checks"][0]["base"], gate["checks"][0]["new"]) == (1.0, 3.5)
    assert gate["checks"][1]["reason"].startswith("methods.b.e has no value in BASE: no masks;")
    assert gate["checks"][2]["reason"].startswith("methods.c.e is not in BASE (the runs differ);")
    assert "base" not in gate["checks"][3]
    with pytest.raises(AuditError, match="the closest valid key is 'delta.methods.c.e'"):
        evaluate_gate(new, ["delta.methods.cc.e > 2"], False, base=base)


CASCADE_END = "methods.gradient.randomization.cascading.-1.spearman"


def test_a_list_entry_the_run_did_not_compute_is_missing_not_unknown(results: dict[str, dict]) -> None:
    """The fixture ran with --randomization-images 0: the cascade is null, so its last entry is a
    metric without a value (skipped with allow_missing), not a misspelt key."""
    assert results["biased"]["methods"]["gradient"]["randomization"]["cascading"] is None
    skipped = evaluate_gate(results["biased"], [f"{CASCADE_END} > 0.5"], True)
    assert skipped["passed"] and skipped["checks"][0]["outcome"] == "skipped"
    assert "methods.gradient.randomization.cascading is null" in skipped["checks"][0]["reason"]
    failed = evaluate_gate(results["biased"], [f"{CASCADE_END} > 0.5"], False)
    assert not failed["passed"] and failed["checks"][0]["outcome"] == "fail"


def test_an_index_past_the_end_of_a_list_is_missing(results: dict[str, dict]) -> None:
    run = {"methods": {"gradient": {"randomization": {"cascading": [{"spearman": 0.2}]}}}}
    check = evaluate_gate(run, ["methods.gradient.randomization.cascading.3.spearman > 0.5"], True)["checks"][0]
    assert check["outcome"] == "skipped" and "has 1 entries" in check["reason"]
    assert evaluate_gate(run, ["methods.gradient.randomization.cascading.-1.spearman < 0.5"], True)["checks"][0]["outcome"] == "fail"
    with pytest.raises(AuditError, match="no key 'methods.gradient.randomization.cascading.0.spearmann'"):
        evaluate_gate(run, ["methods.gradient.randomization.cascading.0.spearmann > 0.5"], True)
