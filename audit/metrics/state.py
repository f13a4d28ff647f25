"""Declared metric states that merge, in the manner of torchmetrics' ``add_state(name, default,
dist_reduce_fx)`` and ``merge_state`` (without depending on torchmetrics).

A metric declares each piece of its state with how two partial states combine:

    "cat"   per-image list, aligned with the image paths the metric saw (a ``paths`` state):
            parts are concatenated in the order they are merged (contiguous shards in order
            give the list of one run over them, bit for bit)
    "sum"   counters: numbers, numpy arrays, and dicts of counts (summed key by key)
    "min"   / "max": extrema
    "one"   a value only one part has (the randomisation check's layers, run by shard 1 only):
            the non-empty one of the two; two different non-empty values are an error

Every metric then has the same interface: ``update(...)`` per batch, ``compute()``,
``merge(other)``, ``state_dict()`` (JSON-able scalars, lists and dicts, plus numpy arrays for the
per-image lists) and ``load_state_dict(d)``. ``merge`` refuses an image path seen by both
states: a merge never counts an image twice.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from audit.errors import AuditError

REDUCTIONS = ("cat", "sum", "min", "max", "one")


def _sum(a: Any, b: Any) -> Any:
    if isinstance(a, dict):
        return {key: _sum(a[key], b[key]) if key in a and key in b else a.get(key, b.get(key)) for key in {**a, **b}}
    return a + b


def _one(a: Any, b: Any) -> Any:
    if a and b and a != b:
        raise AuditError(f"two merged states both hold a value that only one part may have ({a!r} and {b!r})")
    return a or b


def _combine(reduce: str, a: Any, b: Any) -> Any:
    if reduce == "one":
        return _one(a, b)
    if reduce == "cat":
        return [*a, *b]
    if reduce == "sum":
        return _sum(a, b)
    return min(a, b) if reduce == "min" else max(a, b)


class Stateful:
    """Declared states (``add_state``) with ``merge``, ``state_dict`` and ``load_state_dict``.

    A "cat" state is a Python list: of scalars (``dtype`` its numpy type in ``state_dict``) or
    of equal-shape rows (then saved as one stacked array).
    """

    def add_state(self, name: str, default: Any, reduce: str, dtype: Any = np.float64) -> None:
        if reduce not in REDUCTIONS:
            raise ValueError(f"state {name!r}: reduction {reduce!r} is not one of {REDUCTIONS}")
        if "_states" not in self.__dict__:
            self._states: dict[str, tuple[str, Any]] = {}
        self._states[name] = (reduce, dtype)
        setattr(self, name, copy.deepcopy(default))

    def merge(self, other: Stateful) -> None:
        """Fold ``other``'s state into this one (``other`` comes after this one in the run)."""
        if type(other) is not type(self):
            raise AuditError(f"cannot merge a {type(other).__name__} state into a {type(self).__name__}")
        if "paths" in self._states:
            refuse_duplicates(self.paths, other.paths)
        for name, (reduce, _) in self._states.items():
            setattr(self, name, _combine(reduce, getattr(self, name), getattr(other, name)))

    def state_dict(self) -> dict[str, Any]:
        """{state name: value}; "cat" states as numpy arrays, the others JSON-able (or arrays)."""
        result = {}
        for name, (reduce, dtype) in self._states.items():
            value = getattr(self, name)
            result[name] = np.asarray(value, dtype=dtype) if reduce == "cat" else copy.deepcopy(value)
        return result

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` gave (after a JSON/npz round trip)."""
        missing = sorted(set(self._states) - set(state))
        if missing:
            raise AuditError(f"{type(self).__name__} state lacks {', '.join(missing)}")
        for name, (reduce, _) in self._states.items():
            value = state[name]
            if reduce == "cat":
                array = np.asarray(value)
                value = array.tolist() if array.ndim == 1 else list(array)
            setattr(self, name, copy.deepcopy(value))


def refuse_duplicates(seen: list[str], incoming: list[str]) -> None:
    """AuditError naming the first path of ``incoming`` already in ``seen``."""
    known = set(seen)
    twice = next((path for path in incoming if path in known), None)
    if twice is not None:
        raise AuditError(f"image {twice} is in two of the merged states; each image must be audited by exactly one part")


class Composite:
    """A group of states merged, saved and loaded part by part (``parts()``: name → state)."""

    def parts(self) -> dict[str, Any]:
        raise NotImplementedError

    def merge(self, other: Composite) -> None:
        theirs = other.parts()
        for name, part in self.parts().items():
            part.merge(theirs[name])

    def state_dict(self) -> dict[str, Any]:
        return {name: part.state_dict() for name, part in self.parts().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, part in self.parts().items():
            if name not in state:
                raise AuditError(f"the state lacks {name}")
            part.load_state_dict(state[name])
