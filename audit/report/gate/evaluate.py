"""Evaluate gate checks on results.json (and on NEW − BASE for ``delta.`` keys).

Outcomes: ``fail`` when the expression holds, ``pass`` when it does not. A check on a metric
with no value (null in results.json, or present in only one of BASE and NEW for ``delta.``)
fails with the metric's own reason, unless ``allow_missing``: then its outcome is ``skipped``,
which does not fail the gate. A key that is not in the results at all is an AuditError that
names the closest valid key. Numbers compare with numbers and strings with quoted strings
(``finding.code == "uses_artefact"``); a string against a number, either way round, and a
``delta.`` of a string (text has no difference) are AuditErrors that say what to write instead.
The comparison is generic: any results dict with string values can be gated the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from audit.errors import AuditError
from audit.report.gate.expressions import DELTA, Check, parse_expression
from audit.report.gate.keys import (MISSING, closest_key, data_gap, is_metric, lookup, null_reason, suggestion_for_group,
                                    value_keys)


@dataclass
class _Resolved:
    value: float | str | None
    missing: str = ""  # why there is no value
    sides: dict[str, Any] = field(default_factory=dict)  # {"base", "new"} for delta. keys


def evaluate_gate(
    results: dict[str, Any], expressions: list[str], allow_missing: bool, base: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ``gate`` section: every check with its value and outcome, and whether the gate passed.

    ``results`` is the run (NEW in ``audit compare``); ``base`` is BASE, needed by ``delta.`` keys.
    Every key is resolved before any outcome is given, so a typo fails the whole gate with exit 2.
    """
    checks = [parse_expression(expression) for expression in expressions]
    resolved = [_resolve_delta(check, base, results) if check.is_delta else _resolve(check, results) for check in checks]
    entries = [_entry(check, value, allow_missing) for check, value in zip(checks, resolved)]
    return {"checks": entries, "passed": all(e["outcome"] != "fail" for e in entries), "allow_missing": allow_missing}


def _resolve(check: Check, results: dict[str, Any]) -> _Resolved:
    value = lookup(results, check.segments)
    if value is MISSING:
        gap = data_gap(results, check.segments)
        if gap is None:
            raise _unknown(check, value_keys(results))
        return _Resolved(None, f"{check.key} has no value in results.json: {gap}")
    _require_comparable(check, check.key, value)
    if value is None:
        return _Resolved(None, _no_value(check.key, "results.json", results, check.segments))
    return _Resolved(value if check.is_text else float(value))


def _resolve_delta(check: Check, base: dict[str, Any] | None, new: dict[str, Any]) -> _Resolved:
    if base is None:
        raise AuditError(f"gate check {check.expression!r}: delta. keys compare two runs; use them with `audit compare BASE NEW`")
    key = check.key.removeprefix(DELTA)
    sides = {"base": lookup(base, check.segments), "new": lookup(new, check.segments)}
    gaps = {side: data_gap(run, check.segments) for side, run in (("base", base), ("new", new)) if sides[side] is MISSING}
    if sides["base"] is MISSING and sides["new"] is MISSING and None in gaps.values():
        raise _unknown(check, sorted({DELTA + k for k in value_keys(base) + value_keys(new)}))
    if check.is_text:
        raise AuditError(f"gate check {check.expression!r}: a delta. is NEW − BASE, a number; compare it with a number, "
                         f"or gate on NEW's text with '{key} == \"...\"'")
    texts = ", ".join(f"{side.upper()} {_shown(value)}" for side, value in sides.items() if isinstance(value, str))
    if texts:
        raise AuditError(f"gate check {check.expression!r}: {key} is text ({texts}) and text has no delta.; gate on NEW "
                         f"with '{key} == \"...\"' or '!= \"...\"' (the `audit compare` table shows both runs' values)")
    problems = []
    for side, run in (("base", base), ("new", new)):
        if sides[side] is MISSING:
            gap = gaps[side]
            problems.append(f"{key} has no value in {side.upper()}: {gap}" if gap else f"{key} is not in {side.upper()} (the runs differ)")
        else:
            _require_comparable(check, key, sides[side])
            if sides[side] is None:
                problems.append(_no_value(key, side.upper(), run, check.segments))
    shown = {side: None if value is MISSING else value for side, value in sides.items()}
    if problems:
        return _Resolved(None, "; ".join(problems), shown)
    return _Resolved(float(sides["new"]) - float(sides["base"]), sides=shown)


def _entry(check: Check, resolved: _Resolved, allow_missing: bool) -> dict[str, Any]:
    if resolved.value is None:
        outcome = "skipped" if allow_missing else "fail"
        reason = f"{resolved.missing}; " + ("skipped (allow missing)" if allow_missing else "fails (--allow-missing skips it)")
    else:
        holds = check.holds(resolved.value)
        outcome = "fail" if holds else "pass"
        reason = f"{_shown(resolved.value)} {check.operator} {_shown(check.threshold)} {'holds' if holds else 'does not hold'}"
    return {
        "expression": check.expression,
        "key": check.key,
        "operator": check.operator,
        "threshold": check.threshold,
        "value": resolved.value,
        "outcome": outcome,
        "reason": reason,
        **resolved.sides,
    }


def _no_value(key: str, where: str, results: dict[str, Any], segments: list[str]) -> str:
    reason = null_reason(results, segments)
    return f"{key} has no value in {where}" + (f": {reason}" if reason else "")


def _shown(value: float | str) -> str:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else f"{value:.6g}"


def _require_comparable(check: Check, key: str, value: Any) -> None:
    """A number or null for a number, a string or null for a quoted string; AuditError otherwise."""
    if isinstance(value, str) and not check.is_text:
        raise AuditError(
            f"gate check {check.expression!r}: {key} is the text {json.dumps(value, ensure_ascii=False)}; compare it with == or != "
            f"and a quoted string, e.g. '{key} == {json.dumps(value, ensure_ascii=False)}'"
        )
    if check.is_text and is_metric(value) and value is not None:
        raise AuditError(f"gate check {check.expression!r}: {key} is the number {value!r}; compare it with a number, e.g. '{key} > 0.5'")
    if is_metric(value) or isinstance(value, str):
        return
    if isinstance(value, (dict, list)):
        hint = suggestion_for_group(key, value)
        raise AuditError(
            f"gate check {check.expression!r}: {key} is a group of values, not a number"
            + (f"; did you mean {(DELTA if check.is_delta else '') + hint!r}?" if hint else "")
        )
    raise AuditError(f"gate check {check.expression!r}: {key} is {value!r}, not a number or a string")


def _unknown(check: Check, candidates: list[str]) -> AuditError:
    closest = closest_key(check.key, candidates)
    hint = f"; the closest valid key is {closest!r}" if closest else "; the results hold no numbers"
    return AuditError(f"gate check {check.expression!r}: no key {check.key!r} in the results{hint}")
