"""Checks from audit.toml / [tool.audit], and the command line over the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit.errors import AuditError
from audit.report.gate import gate_checks

FILE_CHECK = "performance.auc < 0.8"
CLI_CHECK = "methods.gradient.artefact.enrichment.overall > 2.0"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_no_file_no_checks(tmp_path: Path) -> None:
    assert gate_checks([], None, tmp_path) == ([], False)


def test_audit_toml_and_cli_precedence(tmp_path: Path) -> None:
    write(tmp_path / "audit.toml", f'fail_on = ["{FILE_CHECK}"]\nallow_missing = true\n')
    assert gate_checks([], None, tmp_path) == ([FILE_CHECK], True)
    # any --fail-on replaces the file's list; --no-allow-missing replaces allow_missing
    assert gate_checks([CLI_CHECK], None, tmp_path) == ([CLI_CHECK], True)
    assert gate_checks([CLI_CHECK], None, tmp_path, cli_allow_missing=False) == ([CLI_CHECK], False)


def test_pyproject_tool_audit_and_audit_toml_winning_over_it(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", f'[project]\nname = "x"\n\n[tool.audit]\nfail_on = ["{FILE_CHECK}"]\n')
    assert gate_checks([], None, tmp_path) == ([FILE_CHECK], False)
    write(tmp_path / "audit.toml", f'fail_on = ["{CLI_CHECK}"]\n')
    assert gate_checks([], None, tmp_path) == ([CLI_CHECK], False)


def test_pyproject_without_tool_audit_is_no_config(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n[tool.ruff]\nline-length = 100\n')
    assert gate_checks([], None, tmp_path) == ([], False)


def test_explicit_config_path_wins_over_the_current_directory(tmp_path: Path) -> None:
    write(tmp_path / "audit.toml", f'fail_on = ["{FILE_CHECK}"]\n')
    (tmp_path / "ci").mkdir()
    write(tmp_path / "ci" / "gate.toml", f'fail_on = ["{CLI_CHECK}"]\n')
    assert gate_checks([], Path("ci/gate.toml"), tmp_path) == ([CLI_CHECK], False)
    write(tmp_path / "ci" / "pyproject.toml", '[tool.audit]\nallow_missing = true\n')
    assert gate_checks([], tmp_path / "ci" / "pyproject.toml", tmp_path) == ([], True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('fail-on = ["a < 1"]\n', "unknown key 'fail-on'; did you mean 'fail_on'? (valid keys: fail_on, allow_missing, device, precision)"),
        ("allow_mising = true\n", "unknown key 'allow_mising'; did you mean 'allow_missing'?"),
        ('fail_on = "a < 1"\n', "fail_on must be a list of strings"),
        ('allow_missing = "yes"\n', "allow_missing must be true or false"),
        ('fail_on = ["a = 1"]\n', "audit.toml: fail_on 'a = 1': expected KEY OP NUMBER"),
        ('fail_on = ["delta.a < 1"]\n', "delta. keys compare two runs"),
        ("fail_on = [\n", "not valid TOML"),
    ],
)
def test_bad_config_is_one_line_error_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path / "audit.toml", text)
    with pytest.raises(AuditError) as error:
        gate_checks([], None, tmp_path)
    assert str(tmp_path / "audit.toml") in str(error.value) and message in str(error.value)
    assert "\n" not in str(error.value)


def test_unknown_key_in_tool_audit(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "[tool.audit]\nfailon = []\n")
    with pytest.raises(AuditError, match=r"pyproject.toml \[tool.audit\]: unknown key 'failon'; did you mean 'fail_on'"):
        gate_checks([], None, tmp_path)


def test_delta_in_file_allowed_for_compare(tmp_path: Path) -> None:
    write(tmp_path / "audit.toml", 'fail_on = ["delta.performance.auc < -0.05"]\n')
    assert gate_checks([], None, tmp_path, compare=True) == (["delta.performance.auc < -0.05"], False)


def test_missing_config_and_pyproject_without_table(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="--config nope.toml: not found"):
        gate_checks([], Path("nope.toml"), tmp_path)
    write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n')
    with pytest.raises(AuditError, match=r"no \[tool.audit\] table"):
        gate_checks([], Path("pyproject.toml"), tmp_path)


def test_cli_expressions_are_checked_too(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="--fail-on 'auc < x': expected KEY OP NUMBER"):
        gate_checks(["auc < x"], None, tmp_path)


def test_string_checks_in_the_file(tmp_path: Path) -> None:
    text_check = 'finding.code == "uses_artefact"'
    write(tmp_path / "audit.toml", "fail_on = ['finding.code == \"uses_artefact\"', \"finding.level != 'none'\"]\n")
    assert gate_checks([], None, tmp_path) == ([text_check, "finding.level != 'none'"], False)
    write(tmp_path / "audit.toml", "fail_on = ['finding.code > \"uses_artefact\"']\n")
    with pytest.raises(AuditError, match=r"audit\.toml: fail_on 'finding\.code > \"uses_artefact\"': > compares numbers"):
        gate_checks([], None, tmp_path)
