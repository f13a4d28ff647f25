"""Gate expressions: ``KEY OP NUMBER`` or ``KEY == "TEXT"``; a check *fails* when its expression holds.

``--fail-on "methods.gradient.artefact.enrichment.overall > 2.0"`` fails the run when the
enrichment is above 2. OP is one of ``<  <=  >  >=  ==  !=``; NUMBER is a decimal or
scientific literal (``0.8``, ``-1``, ``2e-3``) within float range (``1e999`` would be infinite
and is refused); spaces around OP are optional. A quoted string
(``"uses_artefact"`` or ``'uses_artefact'``, no escapes) compares text with ``==`` or ``!=``
only: ``--fail-on 'finding.code == "uses_artefact"'``; ``<`` and the others on a string are an
error, and so is a string compared with a number (``evaluate``). KEY is a dotted path into
results.json (see ``keys``); ``delta.KEY`` is NEW − BASE, for numbers, and exists in
``audit compare`` only.
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from dataclasses import dataclass
from typing import Callable

from audit.errors import AuditError

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
DELTA = "delta."
EXAMPLE = "methods.gradient.artefact.enrichment.overall > 2.0"
TEXT_OPERATORS = ("==", "!=")
_SEGMENT = r"[^\s.<>=!]+"
_PATTERN = re.compile(
    rf"\s*(?P<key>{_SEGMENT}(?:\.{_SEGMENT})*)\s*(?P<op><=|>=|==|!=|<|>)\s*"
    r"(?:(?P<number>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|\"(?P<double>[^\"]*)\"|'(?P<single>[^']*)')\s*"
)


@dataclass(frozen=True)
class Check:
    """One parsed expression."""

    expression: str
    key: str  # as written, with ``delta.`` when present
    operator: str
    threshold: float | str  # a str compares text (== and != only)

    @property
    def is_delta(self) -> bool:
        return self.key.startswith(DELTA)

    @property
    def segments(self) -> list[str]:
        """The path into results.json (without ``delta.``)."""
        return self.key.removeprefix(DELTA).split(".")

    @property
    def is_text(self) -> bool:
        return isinstance(self.threshold, str)

    def holds(self, value: float | str) -> bool:
        return OPERATORS[self.operator](value, self.threshold)


def parse_expression(expression: str, source: str = "--fail-on") -> Check:
    """Parse ``KEY OP NUMBER`` or ``KEY ==|!= "TEXT"``; AuditError (one line, with the expected form) otherwise."""
    match = _PATTERN.fullmatch(expression)
    if match is None:
        raise AuditError(
            f"{source} {expression!r}: expected KEY OP NUMBER with OP one of {' '.join(sorted(OPERATORS, key=len))}, "
            f"or KEY == \"TEXT\" / KEY != \"TEXT\", e.g. {EXAMPLE!r}"
        )
    if match["number"] is not None:
        number = float(match["number"])
        if not math.isfinite(number):  # 1e999 parses to inf: a threshold no value can pass or fail sensibly
            raise AuditError(f"{source} {expression!r}: {match['number'][:20]}{'…' if len(match['number']) > 20 else ''} "
                             f"is beyond the largest float (about 1.8e308); give a finite threshold")
        return Check(expression.strip(), match["key"], match["op"], number)
    if match["op"] not in TEXT_OPERATORS:
        raise AuditError(
            f"{source} {expression!r}: {match['op']} compares numbers; a quoted string takes == or != only, "
            f"e.g. 'finding.code == \"uses_artefact\"'"
        )
    text = match["double"] if match["double"] is not None else match["single"]
    return Check(expression.strip(), match["key"], match["op"], text)


@dataclass(frozen=True)
class Group:
    """The names a key's second segment may take in this run: ``methods.NAME`` takes a
    ``--method``, fine-tuning's ``verdict.NAME`` a ``--loss``."""

    what: str  # "method", "loss"
    flag: str  # "--method", "--loss"
    names: list[str]


def validate_expressions(
    expressions: list[str], *, compare: bool = False, groups: dict[str, Group] | None = None, source: str = "--fail-on"
) -> None:
    """Check every expression before any work is done: its syntax, ``delta.`` keys only when
    ``compare``, and that a key whose first segment is in ``groups`` (``methods`` for ``audit
    run``) names one of that group's names in its second."""
    for expression in expressions:
        check = parse_expression(expression, source)
        if check.is_delta and not compare:
            raise AuditError(
                f"{source} {expression!r}: delta. keys compare two runs; use them with `audit compare BASE NEW`"
            )
        segments = check.segments
        group = (groups or {}).get(segments[0])
        if group is not None and len(segments) > 1 and not group.names:
            raise AuditError(f"{source} {expression!r}: this run has no {group.what} to name in {segments[0]}.KEY")
        if group is not None and len(segments) > 1 and segments[1] not in group.names:
            closest = difflib.get_close_matches(segments[1], group.names, n=1, cutoff=0.0)
            hint = f"; did you mean {closest[0]!r}?" if closest else ""
            given = " ".join(f"{group.flag} {name}" for name in group.names)
            raise AuditError(
                f"{source} {expression!r}: {group.what} {segments[1]!r} is not in this run ({given}){hint}"
            )
