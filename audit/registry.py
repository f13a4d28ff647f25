"""Plugin registries: one per kind of plugin, extended by third parties through entry points.

Groups: ``audit.methods`` (saliency methods), ``audit.readers`` (image file readers),
``audit.losses`` (fine-tuning losses). A plugin package declares, in its pyproject.toml::

    [project.entry-points."audit.methods"]
    rise = "audit_rise:Rise"

Built-ins register with the ``register`` decorator; entry points are loaded on first lookup.
"""

from __future__ import annotations

import difflib
from importlib.metadata import entry_points
from typing import Callable, Generic, Iterator, TypeVar

from audit.errors import AuditError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name → object table for one kind of plugin."""

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._items: dict[str, T] = {}
        self._origin: dict[str, str] = {}
        self._loaded_entry_points = False

    def register(self, name: str, origin: str = "builtin") -> Callable[[T], T]:
        """Decorator: ``@methods.register("gradient")``."""

        def add(obj: T) -> T:
            self._items[name] = obj
            self._origin[name] = origin
            return obj

        return add

    def _load_entry_points(self) -> None:
        if self._loaded_entry_points:
            return
        self._loaded_entry_points = True
        for ep in entry_points(group=self.group):
            if ep.name in self._items:
                continue
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not break the tool
                raise AuditError(
                    f"plugin {ep.name!r} ({ep.value}) in group {self.group} failed to load: {exc}; "
                    f"reinstall or uninstall the package that provides it"
                ) from exc
            dist = ep.dist.name if ep.dist is not None else "unknown package"
            self.register(ep.name, origin=dist)(obj)

    def get(self, name: str) -> T:
        self._load_entry_points()
        if name not in self._items:
            close = difflib.get_close_matches(name, self._items, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise AuditError(
                f"unknown {self.kind} {name!r}; {hint}valid: {', '.join(sorted(self._items))}"
            )
        return self._items[name]

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._items)

    def origin(self, name: str) -> str:
        self._load_entry_points()
        return self._origin[name]

    def __contains__(self, name: str) -> bool:
        self._load_entry_points()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
