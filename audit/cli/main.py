"""The ``audit`` command: thin typer front end over the library.

Exit codes: 0 success (all gate checks pass), 1 a gate check failed, 2 bad input or usage,
3 an internal error (a bug: please report it with the ``--debug`` traceback). Every error is
one line on stderr, ``audit: error: ...``, usage errors included (``audit.cli.usage``).
The libraries' logging and warnings are silenced; ``audit``'s own warnings (``AuditWarning``)
print as one line, ``audit: warning: ...``. ``--debug`` anywhere on the command line shows
tracebacks instead of one-line errors, and the libraries' logging and warnings.
"""

from __future__ import annotations

import logging
import sys
import traceback
import warnings
from contextlib import contextmanager
from typing import Iterator

import typer
from rich.console import Console
from rich.text import Text

from audit.allocator import reuse_freed_memory
from audit.cli.usage import ClickException, NoArgsIsHelpError, tidy_metavars, usage_message
from audit.errors import AuditError, AuditWarning, first_line

app = typer.Typer(
    name="audit",
    help="Is an image classifier right for the right reasons? Saliency, masks, counterfactuals, gating.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # click's plain help: whole option names and metavars at any width
)

INTERNAL_ERROR = 3
INTERRUPTED = 130


def _print_version(requested: bool) -> None:
    if requested:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("audit")
        except PackageNotFoundError:  # run from a source tree that was never installed
            number = "unknown (not installed)"
        typer.echo(f"audit {number}")
        raise typer.Exit(0)


@app.callback()
def _root(show_version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                            help="Print audit's version and exit.")) -> None:
    """Is an image classifier right for the right reasons? Saliency, masks, counterfactuals, gating."""


def _register_commands() -> None:
    """Every ``audit/cli/*_command.py`` module registers its command(s) with ``register(app)``."""
    import importlib
    import pkgutil

    import audit.cli

    if app.registered_commands:
        return
    for module in pkgutil.iter_modules(audit.cli.__path__):
        if module.name.endswith("_command"):
            importlib.import_module(f"audit.cli.{module.name}").register(app)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    reuse_freed_memory()
    with library_output(debug):
        return _run(argv, debug)


def _run(argv: list[str], debug: bool) -> int:
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    from audit.report.output_folder import INTERRUPTED as KEPT

    KEPT.clear()  # this command's own interruption only
    try:
        _register_commands()
        command = typer.main.get_command(app)
        tidy_metavars(command)
        code = command.main(args=argv, prog_name="audit", standalone_mode=False)
    except BaseException as exc:  # noqa: BLE001 (every exception becomes an exit code; see _handle)
        return _handle(exc, argv, debug, err)
    if code == INTERRUPTED:  # typer turns a KeyboardInterrupt into Exit(130), silently
        _interrupted(err)
    return code if isinstance(code, int) else 0


def _handle(exc: BaseException, argv: list[str], debug: bool, err: Console) -> int:
    """The exit code of ``exc``, with its one line on stderr (a traceback too with ``--debug``).

    click wraps an ``EOFError`` raised anywhere (a truncated file read by a library) in
    ``Abort``; only a real Ctrl-C is an interruption (130), so an ``Abort`` is judged by the
    exception it wraps: an ``AuditError`` is exit 2, anything else an internal error (3).
    """
    if isinstance(exc, typer.Abort):
        cause = exc.__cause__ or exc.__context__
        if cause is None or isinstance(cause, KeyboardInterrupt):
            return _interrupted(err)
        return _handle(cause, argv, debug, err)
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if isinstance(exc, NoArgsIsHelpError):  # bare `audit`: the help
        exc.show()
        return AuditError.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return _interrupted(err)
    if debug:
        traceback.print_exception(exc)
    if isinstance(exc, ClickException):  # a usage error: unknown flag, bad value, missing argument
        commands = {info.name for info in app.registered_commands if info.name}
        err.print(Text.assemble(("audit: error: ", "bold red"), usage_message(exc, argv, commands)))
        return AuditError.exit_code
    if isinstance(exc, AuditError):
        err.print(Text.assemble(("audit: error: ", "bold red"), str(exc)))
        return AuditError.exit_code
    if not isinstance(exc, Exception):  # GeneratorExit and the like: re-raise what is not an error
        raise exc
    err.print(Text(f"audit: internal error: {type(exc).__name__}: {first_line(exc)} (rerun with --debug and report it)"))
    return INTERNAL_ERROR


def _interrupted(err: Console) -> int:
    from audit.report.output_folder import INTERRUPTED as KEPT

    where = f" in {KEPT[-1]}" if KEPT else ""
    err.print(f"audit: interrupted; results written so far are kept{where}", markup=False, soft_wrap=True)
    return INTERRUPTED


@contextmanager
def library_output(debug: bool) -> Iterator[None]:
    """Silence the libraries' logging (torch's logger and its tracebacks) and warnings (numpy's
    RuntimeWarnings, torch's UserWarnings) unless ``debug``; an ``AuditWarning`` prints as one line.
    Filters, ``showwarning`` and the logging threshold are restored on exit."""
    previous = logging.root.manager.disable
    with warnings.catch_warnings():
        if not debug:
            warnings.simplefilter("ignore")
            logging.disable(logging.CRITICAL)
        warnings.simplefilter("default", AuditWarning)
        warnings.showwarning = _show_warning
        try:
            yield
        finally:
            logging.disable(previous)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001 (warnings' signature)
    if issubclass(category, AuditWarning):
        sys.stderr.write(f"audit: warning: {' '.join(str(message).split())}\n")
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))
