"""Parsing of the command line's small value languages (lists, method options)."""

from __future__ import annotations

import json
from typing import Any

from audit.errors import AuditError


def float_list(text: str, flag: str) -> tuple[float, ...]:
    """'0.485,0.456,0.406' → (0.485, 0.456, 0.406)."""
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise AuditError(f"{flag} {text!r}: give comma-separated numbers, e.g. {flag} 0.5,0.5,0.5") from exc
    if not values:
        raise AuditError(f"{flag} is empty; give comma-separated numbers")
    return values


def value_range(text: str) -> tuple[float, float]:
    values = float_list(text, "--value-range")
    if len(values) != 2 or values[0] >= values[1]:
        raise AuditError(f"--value-range {text!r}: give LOW,HIGH with LOW < HIGH, e.g. 0,255")
    return values[0], values[1]


def _scalar(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def method_options(items: list[str], chosen: list[str]) -> dict[str, dict[str, Any]]:
    """['integrated-gradients.n_steps=32'] → {'integrated-gradients': {'n_steps': 32}}."""
    options: dict[str, dict[str, Any]] = {}
    for item in items:
        name, dot, rest = item.partition(".")
        key, equals, value = rest.partition("=")
        if not dot or not equals or not key:
            raise AuditError(f"--option {item!r}: write METHOD.KEY=VALUE, e.g. integrated-gradients.n_steps=32")
        if name not in chosen:
            raise AuditError(f"--option {item!r}: method {name!r} is not among --method {', '.join(chosen)}")
        options.setdefault(name, {})[key] = _scalar(value)
    return options
