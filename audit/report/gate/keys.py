"""Dotted key paths into results.json: lookup, the valid keys, the closest one to a typo.

A key is a dotted path (``methods.gradient.artefact.enrichment.overall``); a segment that is an
integer indexes a list (``methods.gradient.randomization.cascading.0.spearman``, ``-1`` is the
last entry). A *metric* is a number or null (a metric that could not be computed); a *value*,
what a check can read, is a metric or a string (``finding.code``, ``methods.M.sanity.status``).
"""

from __future__ import annotations

import difflib
import re
from typing import Any

MISSING = object()
PREFERRED_LEAVES = ("overall", "mean", "value", "code", "status")


def lookup(results: Any, segments: list[str]) -> Any:
    """The value at ``segments``, or ``MISSING``."""
    node = results
    for segment in segments:
        if isinstance(node, dict) and segment in node:
            node = node[segment]
        elif isinstance(node, list) and _is_index(segment) and -len(node) <= int(segment) < len(node):
            node = node[int(segment)]
        else:
            return MISSING
    return node


def data_gap(results: Any, segments: list[str]) -> str | None:
    """Why a key that the data decides is absent (None when the key itself is wrong): a list
    index past the end of a list that is there (``randomization.cascading.-1`` of a run without
    the check has no entries), or a group that is null in this run (with its reason)."""
    node = results
    for depth, segment in enumerate(segments):
        where = ".".join(segments[:depth]) or "the results"
        if node is None:
            reason = null_reason(results, segments[:depth])
            return f"{where} is null" + (f" ({reason})" if reason else "")
        if isinstance(node, list) and _is_index(segment) and not -len(node) <= int(segment) < len(node):
            reason = null_reason(results, segments[:depth])
            return f"{where} has {len(node)} entries" + (f" ({reason})" if reason else "")
        child = lookup(node, [segment])
        if child is MISSING:
            return None
        node = child
    return None


def outline_lacks(outline: Any, segments: list[str]) -> bool:
    """Whether ``segments`` cannot be a key of any run shaped like ``outline`` (the results of the
    same run before any image: ``audit.pipeline.results_outline``). What the data decides is
    left open: a null, a list (its entries), an empty table (keys such as class names under
    ``by_class``), and a ``*reason`` beside a value (there only when the value is null)."""
    node = outline
    for depth, segment in enumerate(segments):
        if node is None or isinstance(node, list) or (isinstance(node, dict) and not node):
            return False
        if not isinstance(node, dict):
            return True  # a key below a number or a string
        if segment not in node:
            return not (depth == len(segments) - 1 and segment.endswith("reason"))
        node = node[segment]
    return False


def is_metric(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def is_value(value: Any) -> bool:
    """A number, a string or null: what a gate check can compare."""
    return is_metric(value) or isinstance(value, str)


def kind_of(value: Any) -> str:
    """How a parsed JSON or TOML value is named in a message: "a string", "a list", ..."""
    kinds = ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"), (list, "a list"), (dict, "a table"))
    return next((name for kind, name in kinds if isinstance(value, kind)), "null" if value is None else f"a {type(value).__name__}")


def value_keys(node: Any, prefix: str = "") -> list[str]:
    """Every key path under ``node`` that leads to a number, a string or null, in document order.
    Iterative: a hostile results.json nested a thousand levels deep cannot exhaust the stack."""
    keys: list[str] = []
    stack: list[tuple[str, Any]] = [(prefix, node)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            children = [(str(k), v) for k, v in value.items()]
        elif isinstance(value, list):
            children = [(str(i), v) for i, v in enumerate(value)]
        else:
            if path and is_value(value):
                keys.append(path)
            continue
        stack.extend((f"{path}.{name}" if path else name, child) for name, child in reversed(children))
    return keys


def closest_key(key: str, candidates: list[str]) -> str | None:
    """The candidate most like ``key`` (difflib ratio), or None when there is none."""
    found = difflib.get_close_matches(key, candidates, n=1, cutoff=0.0)
    return found[0] if found else None


def suggestion_for_group(key: str, group: Any) -> str | None:
    """For a key that names a group (a dict or list), the key under it to use instead."""
    if isinstance(group, dict):
        for leaf in PREFERRED_LEAVES:
            if leaf in group and is_value(group[leaf]):
                return f"{key}.{leaf}"
    return closest_key(key, value_keys(group, key))


def null_reason(results: Any, segments: list[str]) -> str | None:
    """Why the metric at ``segments`` is null: a ``<name>_reason`` beside it (``kendall_reason`` for
    ``kendall_tau``), else the nearest ``reason`` above it."""
    parents = [lookup(results, segments[:depth]) for depth in range(len(segments))]
    if parents and isinstance(parents[-1], dict):
        own = [k for k, v in parents[-1].items() if k.endswith("_reason") and isinstance(v, str)
               and f"{segments[-1]}_".startswith(k.removesuffix("reason"))]
        if own:
            return parents[-1][max(own, key=len)]
    for parent in reversed(parents):
        if isinstance(parent, dict) and isinstance(parent.get("reason"), str):
            return parent["reason"]
    return None


def _is_index(segment: str) -> bool:
    return re.fullmatch(r"-?\d+", segment) is not None
