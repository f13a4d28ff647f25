"""Parsing ``KEY OP NUMBER`` and evaluating each operator on hand-written results."""

from __future__ import annotations

import pytest

from audit.errors import AuditError
from audit.report.gate import evaluate_gate, validate_expressions
from audit.report.gate.expressions import Group, parse_expression

RESULTS = {"performance": {"auc": 0.8, "n": 10}, "runs": [{"x": 1.0}, {"x": 3.0}]}


@pytest.mark.parametrize(
    ("operator", "holds"),
    [("<", [True, False, False]), ("<=", [True, True, False]), (">", [False, False, True]),
     (">=", [False, True, True]), ("==", [False, True, False]), ("!=", [True, False, True])],
)
def test_each_operator_fails_the_check_exactly_when_it_holds(operator: str, holds: list[bool]) -> None:
    expressions = [f"performance.auc {operator} {threshold}" for threshold in (0.9, 0.8, 0.7)]
    gate = evaluate_gate(RESULTS, expressions, allow_missing=False)
    assert [c["outcome"] for c in gate["checks"]] == ["fail" if h else "pass" for h in holds]
    assert gate["passed"] is not any(holds)
    assert all(c["operator"] == operator and c["value"] == 0.8 for c in gate["checks"])


@pytest.mark.parametrize(
    ("text", "key", "operator", "threshold"),
    [
        ("performance.auc<0.8", "performance.auc", "<", 0.8),
        ("  performance.auc   >=\t1e-3  ", "performance.auc", ">=", 0.001),
        ("performance.auc != -2.5E+2", "performance.auc", "!=", -250.0),
        ("performance.n == .5", "performance.n", "==", 0.5),
        ("performance.n <= 3.", "performance.n", "<=", 3.0),
        ("delta.methods.0-one-cross.x > +1", "delta.methods.0-one-cross.x", ">", 1.0),
    ],
)
def test_whitespace_and_number_forms(text: str, key: str, operator: str, threshold: float) -> None:
    check = parse_expression(text)
    assert (check.key, check.operator, check.threshold) == (key, operator, threshold)
    assert check.expression == text.strip()


@pytest.mark.parametrize(
    "text",
    ["performance.auc", "performance.auc = 0.8", "performance.auc => 0.8", "performance.auc < ", "< 0.8",
     "performance.auc < 0.8.1", "performance.auc < abc", "performance..auc < 1", "performance.auc < 1 and x > 2",
     "performance auc < 1", "performance.auc < nan", ""],
)
def test_malformed_expression_is_one_line_error_with_the_expected_form(text: str) -> None:
    with pytest.raises(AuditError) as error:
        validate_expressions(["performance.auc < 0.8", text])
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"--fail-on {text!r}: expected KEY OP NUMBER")
    assert "< > <= >= == !=" in message and "methods.gradient.artefact.enrichment.overall > 2.0" in message


def test_delta_keys_only_in_compare() -> None:
    validate_expressions(["delta.performance.auc < -0.1"], compare=True)
    with pytest.raises(AuditError, match="delta. keys compare two runs; use them with `audit compare BASE NEW`"):
        validate_expressions(["delta.performance.auc < -0.1"])
    with pytest.raises(AuditError, match="delta. keys compare two runs"):
        evaluate_gate(RESULTS, ["delta.performance.auc < -0.1"], allow_missing=False)


def test_list_indices_from_the_start_and_the_end() -> None:
    gate = evaluate_gate(RESULTS, ["runs.0.x > 2", "runs.-1.x > 2"], allow_missing=False)
    assert [(c["value"], c["outcome"]) for c in gate["checks"]] == [(1.0, "pass"), (3.0, "fail")]


def test_no_checks_pass() -> None:
    assert evaluate_gate(RESULTS, [], allow_missing=False) == {"checks": [], "passed": True, "allow_missing": False}


def test_method_keys_checked_against_the_run_methods_before_the_run() -> None:
    groups = {"methods": Group("method", "--method", ["gradient", "grad-cam"])}
    validate_expressions(["methods.grad-cam.region.iou.mean < 0.2"], groups=groups)
    with pytest.raises(AuditError) as error:
        validate_expressions(["methods.gradcam.region.iou.mean < 0.2"], groups=groups)
    assert str(error.value) == (
        "--fail-on 'methods.gradcam.region.iou.mean < 0.2': method 'gradcam' is not in this run "
        "(--method gradient --method grad-cam); did you mean 'grad-cam'?"
    )


@pytest.mark.parametrize(
    ("text", "key", "operator", "threshold"),
    [
        ('finding.code == "uses_artefact"', "finding.code", "==", "uses_artefact"),
        ("finding.code!='no_evidence'", "finding.code", "!=", "no_evidence"),
        ('  finetune.verdict.code  ==  "two words, 1 < 2"  ', "finetune.verdict.code", "==", "two words, 1 < 2"),
        ('finding.code == ""', "finding.code", "==", ""),
        ("finding.code == '3'", "finding.code", "==", "3"),
    ],
)
def test_quoted_strings(text: str, key: str, operator: str, threshold: str) -> None:
    check = parse_expression(text)
    assert (check.key, check.operator, check.threshold, check.is_text) == (key, operator, threshold, True)


@pytest.mark.parametrize("operator", ["<", "<=", ">", ">="])
def test_order_on_a_string_is_one_line_error(operator: str) -> None:
    text = f'finding.code {operator} "uses_artefact"'
    with pytest.raises(AuditError) as error:
        validate_expressions([text])
    assert str(error.value) == (f"--fail-on {text!r}: {operator} compares numbers; a quoted string takes == or != only, "
                                "e.g. 'finding.code == \"uses_artefact\"'")


@pytest.mark.parametrize("text", ['finding.code == "open', "finding.code == 'mixed\"", 'finding.code == "a" "b"', "finding.code == uses_artefact"])
def test_malformed_strings_are_one_line_errors(text: str) -> None:
    with pytest.raises(AuditError, match="expected KEY OP NUMBER .*or KEY == \"TEXT\""):
        validate_expressions([text])


def test_text_comparison_is_generic_and_exact() -> None:
    results = {"finetune": {"verdict": {"code": "improved", "sentence": "Better."}}, "n": 3}
    expressions = ['finetune.verdict.code == "improved"', 'finetune.verdict.code != "improved"',
                   "finetune.verdict.code == 'Improved'", 'finetune.verdict.code != "worse"']
    gate = evaluate_gate(results, expressions, allow_missing=False)
    assert [c["outcome"] for c in gate["checks"]] == ["fail", "pass", "pass", "fail"]
    assert gate["checks"][1]["reason"] == '"improved" != "improved" does not hold'
    null = evaluate_gate({"finding": {"code": None, "reason": "not computed"}}, ['finding.code == "x"'], allow_missing=True)
    assert null["checks"][0]["outcome"] == "skipped" and "not computed" in null["checks"][0]["reason"]


def test_delta_of_text_has_no_value() -> None:
    base, new = {"finding": {"code": "no_evidence"}, "p": 1.0}, {"finding": {"code": "uses_artefact"}, "p": 2.0}
    with pytest.raises(AuditError) as error:
        evaluate_gate(new, ["delta.finding.code != 0"], allow_missing=False, base=base)
    assert str(error.value) == (
        "gate check 'delta.finding.code != 0': finding.code is text (BASE \"no_evidence\", NEW \"uses_artefact\") and text "
        "has no delta.; gate on NEW with 'finding.code == \"...\"' or '!= \"...\"' (the `audit compare` table shows both runs' values)"
    )
    with pytest.raises(AuditError, match="a delta. is NEW − BASE, a number; compare it with a number"):
        evaluate_gate(new, ['delta.p == "1"'], allow_missing=False, base=base)
