"""Usage errors (unknown flag, bad value, missing argument) as one line for a CI log.

Typer prints click's usage errors as a boxed panel of 5-6 lines; ``main`` runs the app with
``standalone_mode=False`` and formats the exception here instead::

    audit: error: --batch-size 0: must be ≥ 1 (see audit run --help)
"""

from __future__ import annotations

import re
from typing import Any

try:  # typer ≥ 0.25 carries its own copy of click
    from typer._click.exceptions import BadOptionUsage, BadParameter, ClickException, MissingParameter, NoArgsIsHelpError, NoSuchOption
except ImportError:  # pragma: no cover - older typer on click
    from click import exceptions as _click_exceptions
    from click.exceptions import BadOptionUsage, BadParameter, ClickException, MissingParameter, NoSuchOption

    NoArgsIsHelpError = getattr(_click_exceptions, "NoArgsIsHelpError", type("NoArgsIsHelpError", (ClickException,), {}))

__all__ = ["ClickException", "NoArgsIsHelpError", "tidy_metavars", "usage_message"]

#: what a repeatable option's value is, in the help (typer would print ``<list[str]>``)
LIST_METAVARS = {"method": "<name>", "option": "<method.key=value>", "fail_on": "<expr>", "loss": "<name>"}

# typer validates values with pydantic; its messages, shortened
_SHORTER = (
    (r"Input should be greater than or equal to (.+)", r"must be ≥ \1"),
    (r"Input should be greater than (.+)", r"must be > \1"),
    (r"Input should be less than or equal to (.+)", r"must be ≤ \1"),
    (r"Input should be less than (.+)", r"must be < \1"),
    (r"Input should be a valid integer.*", "must be an integer"),
    (r"Input should be a valid number.*", "must be a number"),
    (r"Input should be a finite number.*", "must be a finite number"),
    (r"Input should be a valid boolean.*", "must be true or false"),
)


def tidy_metavars(command: Any) -> None:
    """Help metavars a user can read: a repeatable option names its value (``--method <name>``,
    not ``<list[str]>``) and a bounded number is ``<int>``/``<float>`` (not ``<int range>``;
    the bound is printed beside it). Every sub-command, in place."""
    for sub in getattr(command, "commands", {}).values():
        tidy_metavars(sub)
    for param in getattr(command, "params", []):
        describe = getattr(param, "type_descriptor", None)
        if param.metavar is not None or describe is None or getattr(param, "is_flag", False):
            continue
        if describe.is_list and not param.param_type_name == "option":  # an argument keeps its name
            label = "<path>" if "Path" in str(describe.annotation) else "<name>"
            param.display_type = lambda ctx, label=label: label
        elif describe.is_list:
            param.metavar = LIST_METAVARS.get(param.name, "<value>")
        elif describe.is_ranged:
            param.metavar = f"<{describe.ranged_type_name}>"


def usage_message(exc: ClickException, argv: list[str], commands: set[str]) -> str:
    """One line that names the flag (and the value given) and what it must be, then where to read more."""
    command = " ".join(["audit", *[a for a in argv[:1] if a in commands]])
    return f"{_what(exc, argv)} (see {command} --help)"


def _what(exc: ClickException, argv: list[str]) -> str:
    if isinstance(exc, MissingParameter) and exc.param is not None:
        name = _name(exc.param)
        return f"missing {'option' if name.startswith('-') else 'argument'} {name}"
    if isinstance(exc, BadParameter) and exc.param is not None:
        given = _given(exc.param, argv)
        return f"{_name(exc.param)}{' ' + given if given else ''}: {_reason(exc.message)}"
    if isinstance(exc, NoSuchOption):
        close = f"; did you mean {' or '.join(sorted(exc.possibilities))}?" if exc.possibilities else ""
        return f"{exc.option_name}: no such option{close}"
    if isinstance(exc, BadOptionUsage):
        reason = re.sub(rf"^Option '{re.escape(exc.option_name)}' ", "", exc.message)
        return f"{exc.option_name}: {_reason(reason)}"
    return _reason(exc.format_message())


def _name(param: Any) -> str:
    """``--batch-size`` for an option, ``MODEL`` for an argument."""
    opts = getattr(param, "opts", None) or [param.name or "?"]
    return opts[0] if opts[0].startswith("-") else opts[0].upper()


def _given(param: Any, argv: list[str]) -> str:
    """The text given for an option on the command line (its last use), or '' for an argument."""
    opts = [o for o in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])] if o.startswith("-")]
    nargs = max(getattr(param, "nargs", 1), 1)
    given = ""
    for i, token in enumerate(argv):
        for opt in opts:
            if token == opt:
                given = " ".join(argv[i + 1 : i + 1 + nargs])
            elif token.startswith(opt + "="):
                given = token[len(opt) + 1 :]
    return given


def _reason(message: str) -> str:
    text = " ".join(message.split()).rstrip(".")
    for pattern, short in _SHORTER:
        if re.fullmatch(pattern, text):
            return re.sub(pattern, short, text)
    return text[:1].lower() + text[1:]
