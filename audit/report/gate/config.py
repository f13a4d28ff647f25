"""Gate checks from the command line and from a config file.

The file is ``--config PATH``, else ``audit.toml`` in the current directory, else the
``[tool.audit]`` table of ``pyproject.toml`` there (``audit.toml`` wins when both exist). A file
named ``pyproject.toml`` is read from its ``[tool.audit]`` table, any other file from its top
level. The file must be UTF-8 (as TOML requires) and ``tool`` / ``tool.audit`` tables. Keys: ``fail_on`` (a list of expressions), ``allow_missing`` (a boolean), and the run's ``device`` and
``precision`` (text, as ``--device`` / ``--precision`` take them; ``audit.device.resolve``).

The command line wins: any ``--fail-on`` replaces the file's ``fail_on`` list (it does not add
to it), and ``--allow-missing``/``--no-allow-missing`` replaces ``allow_missing``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from audit.errors import AuditError
from audit.report.gate.expressions import validate_expressions
from audit.report.gate.keys import closest_key, kind_of

KEYS = ("fail_on", "allow_missing", "device", "precision")
EXAMPLE = 'fail_on = ["methods.gradient.artefact.enrichment.overall > 2.0"]'


def gate_checks(
    cli_expressions: list[str],
    config_path: Path | None,
    cwd: Path,
    cli_allow_missing: bool | None = None,
    *,
    compare: bool = False,
) -> tuple[list[str], bool]:
    """The expressions and ``allow_missing`` to gate on, CLI over file, all syntax-checked.

    ``cli_allow_missing`` None means the flag was not given. ``delta.`` keys are accepted only
    when ``compare`` (``audit compare``).
    """
    source, table = _read_config(config_path, cwd)
    _check_table(table, source)
    validate_expressions(list(cli_expressions), compare=compare)
    if cli_expressions:
        expressions = list(cli_expressions)
    else:
        expressions = list(table.get("fail_on", []))
        validate_expressions(expressions, compare=compare, source=f"{source}: fail_on")
    allow_missing = table.get("allow_missing", False) if cli_allow_missing is None else cli_allow_missing
    return expressions, allow_missing


def _read_config(config_path: Path | None, cwd: Path) -> tuple[str, dict[str, Any]]:
    """(name shown in messages, the table of settings); an empty table when there is no file."""
    if config_path is not None:
        path = config_path if config_path.is_absolute() else cwd / config_path
        if not path.is_file():
            raise AuditError(f"--config {config_path}: not found; give an audit.toml or a pyproject.toml with [tool.audit]")
        if path.name != "pyproject.toml":
            return str(path), _load(path)
        table = _tool_audit(path)
        if table is None:
            raise AuditError(f"--config {config_path}: no [tool.audit] table; add one with {EXAMPLE}")
        return f"{path} [tool.audit]", table
    if (cwd / "audit.toml").is_file():
        return str(cwd / "audit.toml"), _load(cwd / "audit.toml")
    if (cwd / "pyproject.toml").is_file():
        table = _tool_audit(cwd / "pyproject.toml")
        if table is not None:
            return f"{cwd / 'pyproject.toml'} [tool.audit]", table
    return "", {}


def _tool_audit(path: Path) -> dict[str, Any] | None:
    """The ``[tool.audit]`` table of a pyproject.toml, or None when it has none."""
    tool = _load(path).get("tool", {})
    if not isinstance(tool, dict):
        raise AuditError(f"{path}: 'tool' is {kind_of(tool)}, not a table; write [tool.audit] with {EXAMPLE}")
    table = tool.get("audit")
    if table is not None and not isinstance(table, dict):
        raise AuditError(f"{path}: tool.audit is {kind_of(table)}, not a table; write [tool.audit] with {EXAMPLE}")
    return table


def _load(path: Path) -> dict[str, Any]:
    """The TOML file as a dict. TOML is UTF-8 (the spec): other encodings are refused, naming the byte."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start : exc.start + 1].hex()
        raise AuditError(
            f"{path}: not UTF-8 (byte 0x{byte} at offset {exc.start}); TOML files are UTF-8: re-save it as UTF-8 "
            f"(e.g. iconv -f latin1 -t utf-8), or pass another file with --config"
        ) from exc
    except OSError as exc:
        raise AuditError(f"{path}: cannot be read ({exc.strerror}); fix its permissions or pass another file with --config") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AuditError(f"{path}: not valid TOML ({exc}); fix the file or pass another with --config") from exc
    except RecursionError as exc:  # tomllib parses nested arrays and tables recursively
        raise AuditError(f"{path}: nested too deeply to parse (arrays or tables inside each other); a gate config "
                         f"is flat, e.g. {EXAMPLE}") from exc


def _check_table(table: dict[str, Any], source: str) -> None:
    for key in table:
        if key not in KEYS:
            raise AuditError(f"{source}: unknown key {key!r}; did you mean {closest_key(key, list(KEYS))!r}? (valid keys: {', '.join(KEYS)})")
    fail_on = table.get("fail_on", [])
    if not isinstance(fail_on, list) or not all(isinstance(e, str) for e in fail_on):
        raise AuditError(f"{source}: fail_on must be a list of strings, e.g. {EXAMPLE}")
    if not isinstance(table.get("allow_missing", False), bool):
        raise AuditError(f"{source}: allow_missing must be true or false")
    for key, example in (("device", "cuda:0"), ("precision", "bf16")):
        if not isinstance(table.get(key, ""), str):
            raise AuditError(f"{source}: {key} must be text, e.g. {key} = \"{example}\"")


def run_settings(config_path: Path | None, cwd: Path) -> tuple[str, dict[str, Any]]:
    """(name shown in messages, the checked table) of the config file ``gate_checks`` reads."""
    source, table = _read_config(config_path, cwd)
    _check_table(table, source)
    return source, table
