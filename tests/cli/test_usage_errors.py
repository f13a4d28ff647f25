"""Every bad flag, option value, config file and results file is one line on stderr and exit 2.

Each case asserts: exit code 2, exactly one line on stderr that starts with ``audit: error:``,
no traceback, and the flag or file named in the message together with what to write instead.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from audit.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_MODELS = ROOT / "sample_models"

# the required arguments of every command (nothing is read: the usage error comes first)
REQUIRED = {
    "run": ["m.onnx", "--data", "d"],
    "counterfactual": ["m.onnx", "--autoencoder", "ae.pt", "--data", "d", "--out", "o"],
    "train-autoencoder": ["--data", "d", "--out", "ae.pt"],
    "finetune": ["m.onnx", "--data", "d", "--valid", "v", "--masks", "k", "--loss", "actdiff", "--out", "o"],
    "make-synthetic": ["o"],
    "compare": ["a", "b"],
    "report": ["r.json"],
    "plugins": [],
    "methods": [],
    "layers": ["m.onnx"],
    "merge": ["p1", "p2", "--out", "o"],
    "wildcat": ["m.onnx", "--data", "d", "--valid", "v", "--test", "t", "--test-regions", "r", "--out", "o"],
}


def test_every_command_is_listed() -> None:
    from audit.cli.main import _register_commands, app

    _register_commands()
    assert sorted(REQUIRED) == sorted(info.name for info in app.registered_commands if info.name)


def one_line_error(args: list, capsys: pytest.CaptureFixture[str], *named: str) -> str:
    """Run ``audit ARGS`` in process; assert exit 2 and one ``audit: error:`` line naming ``named``."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("audit: error: "), captured.err
    assert "Traceback" not in captured.err + captured.out and captured.out == ""
    for text in named:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.fixture(autouse=True)
def no_config_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in an empty folder: no audit.toml or pyproject.toml is picked up, nothing is left behind."""
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--bogus"], ["--bogus: no such option", "audit run --help"]),
        (["--batch-size", "0"], ["--batch-size 0: must be ≥ 1", "audit run --help"]),
        (["--batch-size=0"], ["--batch-size 0: must be ≥ 1"]),
        (["--seed", "abc"], ["--seed abc: must be an integer"]),
        (["--randomization-images", "-1"], ["--randomization-images -1: must be ≥ 0"]),
        (["--input-size", "28"], ["--input-size: requires 2 arguments"]),
        (["--input-size", "28", "x"], ["--input-size 28 x: must be an integer"]),
        (["--mask-dilate", "-1"], ["--mask-dilate -1: must be ≥ 0"]),
        (["--mask-blur", "nan"], ["--mask-blur nan: must be ≥ 0"]),  # inf and too large: tests/data/test_hostile_data.py
        (["--mask-blur", "-0.5"], ["--mask-blur -0.5: must be ≥ 0"]),
        (["--quiet=3"], ["--quiet: does not take a value"]),
        (["extra-argument"], ["unexpected extra argument", "extra-argument"]),
    ],
)
def test_run_usage_errors_are_one_line(extra: list[str], named: list[str], capsys) -> None:
    one_line_error(["run", *REQUIRED["run"], *extra], capsys, *named)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["run"], ["missing argument MODEL", "audit run --help"]),
        (["run", "m.onnx"], ["missing option --data", "audit run --help"]),
        (["run", "m.onnx", "--data"], ["--data: requires an argument"]),
        (["compare", "a"], ["missing argument NEW", "audit compare --help"]),
        (["nosuch"], ["no such command 'nosuch'", "audit --help"]),
        (["--bogus"], ["--bogus: no such option", "audit --help"]),
    ],
)
def test_missing_arguments_and_commands_are_one_line(args: list[str], named: list[str], capsys) -> None:
    one_line_error(args, capsys, *named)


@pytest.mark.parametrize("command", sorted(REQUIRED))
def test_every_command_refuses_an_unknown_flag_in_one_line(command: str, capsys) -> None:
    one_line_error([command, *REQUIRED[command], "--no-such-flag"], capsys, "--no-such-flag: no such option", f"audit {command} --help")


@pytest.mark.parametrize("command", ["run", "train-autoencoder", "finetune", "make-synthetic"])
@pytest.mark.parametrize("seed", ["-1", str(2**32), str(2**70)])
def test_every_seed_is_in_numpys_range(command: str, seed: str, capsys) -> None:
    one_line_error([command, *REQUIRED[command], "--seed", seed], capsys, f"--seed {seed}: must be an integer from 0 to 2**32 - 1 = 4294967295")


@pytest.mark.parametrize(
    ("flag", "value", "named"),
    [
        ("--std", "0", "--std 0: must be > 0"),
        ("--std", "0.5,-0.5,0.5", "must be > 0"),
        ("--std", "nan", "--std nan: must be finite numbers"),
        ("--mean", "inf", "--mean inf: must be finite numbers"),
        ("--value-range", "0,inf", "--value-range 0,inf: must be finite numbers, e.g. --value-range 0,255"),
        ("--value-range", "1,0", "LOW < HIGH"),
    ],
)
@pytest.mark.parametrize("command", ["run", "counterfactual", "finetune"])
def test_normalisation_flags_are_finite_and_std_positive(command: str, flag: str, value: str, named: str, capsys) -> None:
    one_line_error([command, *REQUIRED[command], flag, value], capsys, named)


@pytest.mark.parametrize(
    ("option", "named"),
    [
        ("smoothgrad.samples=2.5", "samples takes an integer, not 2.5, e.g. smoothgrad.samples=50"),
        ("smoothgrad.samples=true", "samples takes an integer, not true"),
        ("smoothgrad.samples=1e3", "samples takes an integer"),
        ("smoothgrad.noise_level=NaN", "NaN is not a finite number"),
        ("smoothgrad.noise_level=Infinity", "Infinity is not a finite number"),
        ("smoothgrad.noise_level=-Infinity", "-Infinity is not a finite number"),
        ("smoothgrad.noise_level=1e999", "1e999 is not a finite number"),
        ("smoothgrad.noise_level=high", "noise_level takes a number, not high, e.g. smoothgrad.noise_level=0.15"),
        ("smoothgrad.seed=-1", "a seed must be an integer from 0 to 2**32 - 1"),
        ("smoothgrad.seed=1180591620717411303424", "a seed must be an integer from 0 to 2**32 - 1"),
        ("smoothgrad.noise=0.1", "smoothgrad has no option 'noise'; its options: samples (int, default 50), "
                                 "noise_level (float, default 0.15), seed (int, default 0) (`audit methods smoothgrad` explains them)"),
        ("latentshift-max.drp=0.2", "latentshift-max has no option 'drp'; its options: autoencoder (str | None, default None)"),
        ("gradient.steps=2", "method 'gradient' takes no options"),
        ("integrated-gradients.n_steps=[1]", "n_steps takes an integer, not [1]"),
        ("occlusion.window=null", "window takes a number, not null"),
        ("latentshift-max.drop=NaN", "NaN is not a finite number"),
    ],
)
def test_method_options_are_checked_against_the_method_signature(option: str, named: str, capsys) -> None:
    method = option.partition(".")[0]
    one_line_error(["run", *REQUIRED["run"], "--method", method, "--option", option], capsys, f"--option {option}", named)


def test_method_options_keep_valid_values_and_their_types() -> None:
    from audit.cli.options import method_options

    options = method_options(
        ["smoothgrad.samples=8", "smoothgrad.noise_level=0", "smoothgrad.seed=4294967295", "occlusion.window=1",
         "grad-cam.layer=3", "grad-cam.layer=features.3", "latentshift-max.autoencoder=ae.pt", "latentshift-max.drop=0.2"],
        ["smoothgrad", "occlusion", "grad-cam", "latentshift-max"],
    )
    assert options == {
        "smoothgrad": {"samples": 8, "noise_level": 0, "seed": 4294967295},
        "occlusion": {"window": 1},
        "grad-cam": {"layer": "features.3"},  # the last one given; "3" was kept as text, the layer's type
        "latentshift-max": {"autoencoder": "ae.pt", "drop": 0.2},
    }
    assert method_options(["grad-cam.layer=3"], ["grad-cam"]) == {"grad-cam": {"layer": "3"}}
    assert method_options(["grad-cam.layer=null"], ["grad-cam"]) == {"grad-cam": {"layer": None}}


# ---- configuration files --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (b"[tool]\naudit = 5\n", ["pyproject.toml: tool.audit is an integer, not a table", "[tool.audit]"]),
        (b"tool = 1\n", ["pyproject.toml: 'tool' is an integer, not a table", "[tool.audit]"]),
        (b'[tool]\naudit = "x"\n', ["tool.audit is a string, not a table"]),
        (b'[tool.audit]\n# caf\xe9\nfail_on = []\n', ["pyproject.toml: not UTF-8 (byte 0xe9 at offset 18)", "re-save it as UTF-8"]),
        (b"[tool.audit\n", ["pyproject.toml: not valid TOML"]),
    ],
)
@pytest.mark.parametrize("command", ["run", "compare"])
def test_a_broken_pyproject_is_one_line(command: str, text: bytes, named: list[str], tmp_path: Path, capsys) -> None:
    (tmp_path / "pyproject.toml").write_bytes(text)
    one_line_error([command, *REQUIRED[command]], capsys, str(tmp_path / "pyproject.toml"), *named)
    one_line_error([command, *REQUIRED[command], "--config", tmp_path / "pyproject.toml"], capsys, *named)


def test_a_latin1_audit_toml_is_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "audit.toml").write_bytes('fail_on = ["performance.auc < 0.8"]  # für CI\n'.encode("latin-1"))
    one_line_error(["compare", "a", "b"], capsys, f"{tmp_path / 'audit.toml'}: not UTF-8 (byte 0xfc", "re-save it as UTF-8")
    (tmp_path / "gate.toml").write_bytes((tmp_path / "audit.toml").read_bytes())
    one_line_error(["run", *REQUIRED["run"], "--config", "gate.toml"], capsys, f"{tmp_path / 'gate.toml'}: not UTF-8")


# ---- results files: `audit compare` and `audit report` ---------------------------------------------


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run: the biased sample model, gradient saliency, 8 synthetic images."""
    from audit.data.synthetic import make_synthetic

    root = tmp_path_factory.mktemp("usage-run")
    valid = make_synthetic(root / "data", seed=2, n_train=2, n_valid=8, n_test=2) / "valid"
    args = ["run", SAMPLE_MODELS / "biased.onnx", "--data", valid / "images", "--masks", valid / "artefacts",
            "--out", root / "run", "--randomization-images", "0", "--quiet"]
    assert main([str(a) for a in args]) == 0
    return root / "run"


def _with(results: dict, key: str, value: object) -> dict:
    changed = copy.deepcopy(results)
    *parents, last = key.split(".")
    node = changed
    for part in parents:
        node = node[part]
    node[last] = value
    return changed


WRONG_TYPES = [
    ("methods", 5, "methods is an integer (5), not an object"),
    ("model", "m", "model is a string ('m'), not an object"),
    ("methods.gradient", [1], "methods.gradient is a list ([1]), not an object"),
    ("methods.gradient.artefact", "x", "methods.gradient.artefact is a string ('x'), not an object"),
    ("performance.auc", "0.9", "performance.auc is a string ('0.9'), not a finite number or null"),
    ("performance.accuracy", True, "performance.accuracy is a boolean (True), not a finite number or null"),
    ("methods.gradient.artefact.enrichment.overall", float("nan"), "is a number (nan), not a finite number or null"),
    ("finding.code", 3, "finding.code is an integer (3), not text or null"),
]


@pytest.mark.parametrize(("key", "value", "named"), WRONG_TYPES)
def test_compare_refuses_results_with_wrong_types(run_folder: Path, key: str, value: object, named: str, tmp_path: Path, capsys) -> None:
    results = json.loads((run_folder / "results.json").read_text())
    hostile = tmp_path / "hostile.json"
    hostile.write_text(json.dumps(_with(results, key, value)))  # NaN is written as the bare token NaN
    one_line_error(["compare", run_folder, hostile], capsys, f"{hostile}: ", named, "rerun `audit run`")
    one_line_error(["compare", hostile, run_folder, "--json"], capsys, f"{hostile}: ", named)
    one_line_error(["report", hostile, "--out", tmp_path / "r.pdf"], capsys, f"{hostile}: ", named)
    assert not (tmp_path / "r.pdf").exists()


def test_compare_and_report_accept_the_real_run(run_folder: Path, tmp_path: Path, capsys) -> None:
    assert main(["compare", str(run_folder), str(run_folder / "results.json"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mismatches"] == []
    assert main(["report", str(run_folder), "--out", str(tmp_path / "r.pdf")]) == 0
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF")


def test_report_and_compare_name_the_file_given(run_folder: Path, tmp_path: Path, capsys) -> None:
    line = one_line_error(["report", "wrong.json"], capsys, "wrong.json: not found (no such file or folder)", "give a results.json")
    assert "results.json:" not in line
    empty = tmp_path / "empty-run"
    empty.mkdir()
    one_line_error(["report", empty], capsys, f"{empty}: this folder has no results.json")
    one_line_error(["compare", run_folder, "missing-run"], capsys, "missing-run: not found (no such file or folder)")
    # a results.json copied under another name, without its methods: the message names the copy
    results = json.loads((run_folder / "results.json").read_text())
    del results["methods"]
    copy_path = tmp_path / "wrong.json"
    copy_path.write_text(json.dumps(results))
    line = one_line_error(["report", copy_path], capsys, f"{copy_path}: missing methods")
    assert "results.json:" not in line


# ---- a real process ----------------------------------------------------------------------------------


def test_console_script_prints_usage_errors_in_one_line(tmp_path: Path) -> None:
    audit = Path(sys.executable).with_name("audit")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for args, named in (
        (["run", "m.onnx", "--data", "d", "--batch-size", "0"], "audit: error: --batch-size 0: must be ≥ 1 (see audit run --help)"),
        (["run"], "audit: error: missing argument MODEL (see audit run --help)"),
        (["make-synthetic", "o", "--seed", str(2**70)], "--seed 1180591620717411303424: must be an integer from 0"),
    ):
        done = subprocess.run([audit, *args], capture_output=True, text=True, cwd=tmp_path, env=env)
        assert done.returncode == 2 and done.stdout == "", done.stderr
        assert done.stderr.count("\n") == 1 and named in done.stderr and "Traceback" not in done.stderr, done.stderr
    debug = subprocess.run([audit, "run", "m.onnx", "--data", "d", "--batch-size", "0", "--debug"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert debug.returncode == 2 and "Traceback" in debug.stderr and "audit: error: --batch-size 0" in debug.stderr
