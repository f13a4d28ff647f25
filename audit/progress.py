"""Progress of a run, one phase at a time (auditing, randomisation, counterfactual strips, report).

The library reports to a ``Phases`` (``start(phase, total)``, then ``advance(n)``); the command
line shows one rich progress bar per phase, each with its own count and time remaining
(``RichPhases``); everything else passes ``SILENT``.
"""

from __future__ import annotations

from typing import Any, Protocol


class Phases(Protocol):
    def start(self, phase: str, total: int | None) -> None:
        """A new phase of ``total`` steps (None: unknown); the previous one is finished."""

    def advance(self, steps: int = 1) -> None:
        """``steps`` more steps of the current phase are done."""

    def note(self, line: str) -> None:
        """A line to show before the phases (the run's cost estimate, ``audit.cost``)."""


class Silent:
    def start(self, phase: str, total: int | None) -> None:
        pass

    def note(self, line: str) -> None:
        pass

    def advance(self, steps: int = 1) -> None:
        pass


SILENT = Silent()


class RichPhases:
    """One task of a ``rich.progress.Progress`` per phase, named ``prefix + phase`` (with the
    task ``fields`` the display's columns read); a finished phase's bar is completed."""

    def __init__(self, progress: Any, prefix: str = "", **fields: Any) -> None:
        self.progress, self.prefix, self.fields = progress, prefix, fields
        self.task: Any = None
        self.total: int | None = None

    def start(self, phase: str, total: int | None) -> None:
        self._finish()
        self.task, self.total = self.progress.add_task(self.prefix + phase, total=total, **self.fields), total

    def advance(self, steps: int = 1) -> None:
        if self.task is not None:
            self.progress.advance(self.task, steps)

    def note(self, line: str) -> None:
        """Printed on the progress display's console (stderr), unless the display is off (``--quiet``)."""
        if not self.progress.disable:
            self.progress.console.print(f"audit: {line}", highlight=False, markup=False, soft_wrap=True)

    def _finish(self) -> None:
        if self.task is not None and self.total is not None:
            self.progress.update(self.task, completed=self.total)
