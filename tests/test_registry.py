"""Plugins through REAL entry points: a ``*.dist-info`` folder and modules on ``sys.path``, found by
importlib.metadata. One plugin raises on import, one takes the built-in name ``gradient``, one
is good. A broken plugin must not break the registry, and a clash must not go unnoticed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from audit.cli.main import main
from audit.errors import AuditError, AuditWarning
from tests.conftest import installed_plugins

pytestmark = pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore::audit.errors.AuditWarning")

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "audit-fixture-plugins"
MODULES = ("audit_fixture_broken", "audit_fixture_clash", "audit_fixture_good")

ENTRY_POINTS = """\
[audit.methods]
fixture-broken = audit_fixture_broken:Method
gradient = audit_fixture_clash:Method
fixture-good = audit_fixture_good:Scaled

[audit.readers]
fixture-broken-reader = audit_fixture_broken:Reader
"""

BROKEN = """\
raise RuntimeError("fixture plugin fails on import\\nsecond line of the message")
"""

CLASH = """\
from pathlib import Path
Path(__file__).with_name("clash-imported").write_text("the shadowed plugin ran")
"""

# a real method: |x| summed over channels, times ``scale``; importing it triggers a numpy
# RuntimeWarning and a message on torch's own logger (the library output the CLI silences)
GOOD = """\
import logging

import numpy as np

from audit.saliency.base import SaliencyMethod

np.log(np.zeros(1))
logging.getLogger("torch.export").warning("fixture plugin: torch logger message")


class Scaled(SaliencyMethod):
    forward_only = True

    def __init__(self, *, scale: float = 1.0, repeats: int = 1) -> None:
        self.scale, self.repeats = scale, repeats

    def attribute(self, model, x, target):
        return (self.scale * x.abs().sum(dim=1)).numpy()
"""


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The fixture plugins on sys.path; afterwards the registries load the real environment's again."""
    modules = dict(zip(MODULES, (BROKEN, CLASH, GOOD)))
    with installed_plugins(tmp_path / "site", {PACKAGE: (ENTRY_POINTS, modules)}, monkeypatch) as root:
        yield root


def test_a_broken_plugin_is_recorded_and_the_others_still_load(plugins: Path) -> None:
    from audit.data.readers import readers, readers_by_extension
    from audit.saliency import methods
    from audit.saliency.gradient import Gradient

    with pytest.warns(AuditWarning, match="plugin 'gradient' .*audit_fixture_clash:Method.* from audit-fixture-plugins .*built-in saliency method 'gradient'"):
        names = methods.names()
    assert "fixture-good" in names and "fixture-broken" not in names and "rise" in names  # the plugin after the broken one, and the real one
    assert methods.get("gradient") is Gradient and methods.origin("gradient") == "builtin"
    assert not (plugins / "clash-imported").exists()  # the shadowed plugin's code never ran
    assert methods.origin("fixture-good") == PACKAGE
    unloaded = {entry.name: entry for entry in methods.unloaded()}
    assert unloaded["fixture-broken"].failed and unloaded["fixture-broken"].package == PACKAGE
    assert unloaded["fixture-broken"].reason == "RuntimeError: fixture plugin fails on import"
    assert not unloaded["gradient"].failed
    with pytest.raises(AuditError) as error:
        methods.get("fixture-broken")
    message = str(error.value)
    assert "\n" not in message and "'fixture-broken' (audit_fixture_broken:Method)" in message
    assert f"plugin package {PACKAGE} failed to load: RuntimeError: fixture plugin fails on import" in message
    assert f"reinstall or uninstall {PACKAGE}" in message
    # the good plugin works: |x| summed over channels times scale, by hand
    x = torch.arange(12, dtype=torch.float32).reshape(1, 3, 2, 2) - 6
    maps = methods.get("fixture-good")(scale=2.0).attribute(None, x, torch.zeros(1, dtype=torch.int64))
    np.testing.assert_allclose(maps, 2.0 * np.abs(x.numpy()).sum(axis=1))
    # a broken reader plugin leaves the built-in readers working
    assert [entry.name for entry in readers.unloaded()] == ["fixture-broken-reader"]
    assert {".png", ".npy", ".tif"} <= set(readers_by_extension())


def test_audit_plugins_lists_failures_and_the_clash(plugins: Path, capsys) -> None:
    assert main(["plugins"]) == 0
    captured = capsys.readouterr()
    assert "fixture-good" in captured.out
    unloaded = [line for line in captured.out.splitlines() if line.startswith(("failed to load:", "not used:"))]
    assert unloaded == [
        f"failed to load: audit.methods 'fixture-broken' (audit_fixture_broken:Method) from {PACKAGE}: RuntimeError: fixture plugin fails on import",
        f"not used: audit.methods 'gradient' (audit_fixture_clash:Method) from {PACKAGE}: name taken by the built-in saliency method 'gradient', which is used",
        f"failed to load: audit.readers 'fixture-broken-reader' (audit_fixture_broken:Reader) from {PACKAGE}: RuntimeError: fixture plugin fails on import",
    ]
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("audit: warning: plugin 'gradient'"), captured.err
    assert "built-in saliency method 'gradient'" in lines[0] and PACKAGE in lines[0]
    assert not (plugins / "clash-imported").exists()


def test_a_broken_plugin_is_one_line_when_asked_for(plugins: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["run", "m.onnx", "--data", "d", "--method", "fixture-broken", "--option", "fixture-broken.k=1"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("audit: error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err
    assert "'fixture-broken'" in errors[0] and "failed to load: RuntimeError" in errors[0]


@pytest.mark.parametrize(
    ("option", "named"),
    [("fixture-good.repeats=2.5", "repeats takes an integer, not 2.5, e.g. fixture-good.repeats=1"),
     ("fixture-good.scale=NaN", "NaN is not a finite number"),
     ("fixture-good.scale=big", "scale takes a number, not big"),
     ("fixture-good.size=3", "fixture-good has no option 'size'; its options: scale (float, default 1.0), repeats (int, default 1)")],
)
def test_plugin_options_are_checked_against_its_signature(plugins: Path, option: str, named: str) -> None:
    from audit.cli.options import method_options

    with pytest.raises(AuditError, match=re.escape(named)):
        method_options([option], ["fixture-good"])
    assert method_options(["fixture-good.repeats=3", "fixture-good.scale=2"], ["fixture-good"]) == {"fixture-good": {"repeats": 3, "scale": 2}}


def test_library_logging_and_warnings_are_silent_unless_debug(plugins: Path, tmp_path: Path) -> None:
    """A real process: numpy's RuntimeWarning and torch's logger (both from the good plugin's
    import) are silenced; audit's own warning (the clash) is one line; --debug shows them all."""
    root = plugins
    audit = Path(sys.executable).with_name("audit")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(root)])}
    quiet = subprocess.run([audit, "plugins"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr.splitlines() == [textwrap.shorten(quiet.stderr, 10_000)]  # one line
    assert quiet.stderr.startswith("audit: warning: plugin 'gradient'")
    debug = subprocess.run([audit, "plugins", "--debug"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert debug.returncode == 0
    assert "RuntimeWarning: divide by zero" in debug.stderr and "fixture plugin: torch logger message" in debug.stderr
    assert "audit: warning: plugin 'gradient'" in debug.stderr
    assert "fixture-broken" in quiet.stdout and "fixture-good" in quiet.stdout
