"""The ``audit`` command: thin typer front end over the library.

Exit codes: 0 success (all gate checks pass), 1 a gate check failed, 2 bad input or usage,
3 an internal error (a bug: please report it with the ``--debug`` traceback).
``--debug`` anywhere on the command line shows tracebacks instead of one-line errors.
"""

from __future__ import annotations

import sys
import traceback

import typer
from rich.console import Console
from rich.text import Text

from audit.allocator import reuse_freed_memory
from audit.errors import AuditError, first_line

app = typer.Typer(
    name="audit",
    help="Is an image classifier right for the right reasons? Saliency, masks, counterfactuals, gating.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

INTERNAL_ERROR = 3


def _register_commands() -> None:
    """Every ``audit/cli/*_command.py`` module registers its command(s) with ``register(app)``."""
    import importlib
    import pkgutil

    import audit.cli

    for module in pkgutil.iter_modules(audit.cli.__path__):
        if module.name.endswith("_command"):
            importlib.import_module(f"audit.cli.{module.name}").register(app)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    reuse_freed_memory()
    try:
        _register_commands()
        app(args=argv, prog_name="audit", standalone_mode=True)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
    except AuditError as exc:
        if debug:
            traceback.print_exc()
        err.print(Text.assemble(("audit: error: ", "bold red"), str(exc)))
        return AuditError.exit_code
    except KeyboardInterrupt:
        err.print("audit: interrupted; results written so far are kept", markup=False)
        return 130
    except Exception as exc:  # a bug: one line unless --debug
        if debug:
            traceback.print_exc()
        err.print(
            Text(f"audit: internal error: {type(exc).__name__}: {first_line(exc)} (rerun with --debug and report it)")
        )
        return INTERNAL_ERROR
    return 0
