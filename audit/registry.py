"""Plugin registries: one per kind of plugin, extended by third parties through entry points.

Groups: ``audit.methods`` (saliency methods), ``audit.readers`` (image file readers),
``audit.losses`` (fine-tuning losses). A plugin package declares, in its pyproject.toml::

    [project.entry-points."audit.methods"]
    rise = "audit_rise:Rise"

Built-ins register with the ``register`` decorator; entry points are loaded on first lookup,
each on its own: one that fails to import is recorded (``failures``, listed by ``audit plugins``)
and is an ``AuditError`` only when its name is asked for, so it never hides the others. Whatever
the import raises counts as a failure, ``SystemExit`` and ``KeyboardInterrupt`` included, except
a real Ctrl-C (a SIGINT received while loading), which still interrupts. The loaded object is
checked too (``validate``: a reader needs ``extensions`` and ``read``, a method must subclass
``SaliencyMethod``, a loss must be callable): one that is not what its group needs is a failed
plugin as well. A plugin whose name is already taken (a built-in, or an earlier plugin) is not
loaded at all: the one registered first wins, and an ``AuditWarning`` names both.
"""

from __future__ import annotations

import difflib
import signal
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Callable, Generic, Iterator, TypeVar

from audit.errors import AuditError, AuditWarning, first_line

T = TypeVar("T")
BUILTIN = "builtin"


@dataclass(frozen=True)
class Unloaded:
    """An entry point that was not registered: ``reason`` is one line (a failure or a clash)."""

    name: str
    package: str
    value: str
    reason: str
    failed: bool  # True: it raised on load; False: its name was taken


class Registry(Generic[T]):
    """A name → object table for one kind of plugin."""

    def __init__(self, kind: str, group: str, validate: Callable[[Any], str | None] = lambda obj: None) -> None:
        """``validate(obj)``: None when a plugin's object is usable, else why not (one line)."""
        self.kind = kind
        self.group = group
        self.validate = validate
        self._items: dict[str, T] = {}
        self._origin: dict[str, str] = {}  # BUILTIN or the package whose entry point registered the name
        self._unloaded: dict[str, Unloaded] = {}
        self._loaded_entry_points = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator for built-ins: ``@methods.register("gradient")``."""

        def add(obj: T) -> T:
            self._items[name] = obj
            self._origin[name] = BUILTIN
            return obj

        return add

    def refresh(self) -> None:
        """Forget the plugins; the next lookup loads the entry points again (after a package
        was installed or removed in this process)."""
        for name in [n for n, origin in self._origin.items() if origin != BUILTIN]:
            del self._items[name], self._origin[name]
        self._unloaded.clear()
        self._loaded_entry_points = False

    def _load_entry_points(self) -> None:
        if self._loaded_entry_points:
            return
        self._loaded_entry_points = True
        for ep in entry_points(group=self.group):
            package = ep.dist.name if ep.dist is not None else "an unknown package"
            if ep.name in self._items:
                self._clash(ep, package)
                continue
            try:
                with _real_interrupts() as interrupted:
                    obj = ep.load()
                reason = self.validate(obj)
            except BaseException as exc:  # a broken plugin must not break the tool (nor exit it)
                if interrupted and isinstance(exc, KeyboardInterrupt):
                    raise
                reason = f"{type(exc).__name__}: {first_line(exc)}"
            if reason is not None:
                self._unloaded.setdefault(ep.name, Unloaded(ep.name, package, ep.value, reason, failed=True))
                continue
            self._items[ep.name] = obj
            self._origin[ep.name] = package

    def _clash(self, ep: EntryPoint, package: str) -> None:
        origin = self._origin[ep.name]
        holder = "the built-in" if origin == BUILTIN else f"the plugin from {origin}"
        reason = f"name taken by {holder} {self.kind} {ep.name!r}, which is used"
        self._unloaded.setdefault(ep.name, Unloaded(ep.name, package, ep.value, reason, failed=False))
        warnings.warn(
            f"plugin {ep.name!r} ({ep.value}) from {package} in {self.group} is not loaded: {reason}; "
            f"rename the plugin's entry point",
            AuditWarning,
            stacklevel=2,
        )

    def get(self, name: str) -> T:
        self._load_entry_points()
        if name in self._items:
            return self._items[name]
        failed = self._unloaded.get(name)
        if failed is not None and failed.failed:
            raise AuditError(
                f"{self.kind} {name!r} ({failed.value}) from the plugin package {failed.package} failed to load: "
                f"{failed.reason}; reinstall or uninstall {failed.package} (`audit plugins` lists every plugin)"
            )
        close = difflib.get_close_matches(name, self._items, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise AuditError(f"unknown {self.kind} {name!r}; {hint}valid: {', '.join(sorted(self._items))}")

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._items)

    def origin(self, name: str) -> str:
        """``"builtin"`` or the name of the package whose entry point registered ``name``."""
        self._load_entry_points()
        return self._origin[name]

    def unloaded(self) -> list[Unloaded]:
        """Entry points of this group that are not registered: failed to load, or name taken."""
        self._load_entry_points()
        return list(self._unloaded.values())

    def __contains__(self, name: str) -> bool:
        self._load_entry_points()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


@contextmanager
def _real_interrupts() -> Iterator[list[bool]]:
    """Within the block, a SIGINT sets the yielded list's flag before it raises
    ``KeyboardInterrupt``, so a Ctrl-C can be told from a plugin that raises one itself. Outside
    the main thread (no signal handlers there) every ``KeyboardInterrupt`` counts as real."""
    flag: list[bool] = []
    if threading.current_thread() is not threading.main_thread():
        flag.append(True)
        yield flag
        return
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum: int, frame: Any) -> None:
        flag.append(True)
        if previous == signal.SIG_IGN:
            return
        if callable(previous):
            previous(signum, frame)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
