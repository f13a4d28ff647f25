"""Every command's --help at 80 columns: option names whole, metavars a user can read."""

from __future__ import annotations

import re

import pytest

from audit.cli.main import _register_commands, app, main

_register_commands()
COMMANDS = sorted(info.name for info in app.registered_commands if info.name)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_at_80_columns_shows_whole_option_names_and_plain_metavars(command: str, capsys, monkeypatch) -> None:
    import typer

    monkeypatch.setenv("COLUMNS", "80")
    assert main([command, "--help"]) == 0
    text = capsys.readouterr().out
    click_command = typer.main.get_command(app).commands[command]
    for param in click_command.params:
        for name in getattr(param, "opts", []):
            if name.startswith("--"):
                assert re.search(rf"(^|[\s,]){re.escape(name)}([\s/=]|$)", text, re.M), f"{command}: {name} not shown whole"
    assert "…" not in text
    for unreadable in ("<bool>", "<list[", "range>"):
        assert unreadable not in text, f"{command} --help shows {unreadable}"
