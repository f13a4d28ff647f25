"""Hostile-user cases of issue 13 that exited 3 (or 0, or 130) instead of one line and exit 2."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import torch
from pypdf import PdfReader

from audit.cli.main import main
from tests.conftest import installed_plugins, TinyCNN, assert_one_line_error, export_onnx


def run(args: list, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def runs(synthetic_root: Path, tiny_model_files, tmp_path_factory) -> tuple[Path, Path]:
    """Two published run folders (BASE and NEW) of the tiny model."""
    root = tmp_path_factory.mktemp("runs")
    valid = synthetic_root / "valid"
    code = main([str(a) for a in ["run", tiny_model_files["onnx"], "--data", valid / "images", "--masks", valid / "artefacts",
                                  "--out", root / "base", "--quiet", "--method", "gradient", "--randomization-images", "0"]])
    assert code == 0
    shutil.copytree(root / "base", root / "new")
    return root / "base", root / "new"


# --- main: exit codes ---------------------------------------------------------------------------

def test_an_eof_error_is_an_internal_error_not_an_interruption(runs, monkeypatch, capsys) -> None:
    """click wraps EOFError in Abort; that is a bug to report (3), not a Ctrl-C (130)."""
    def truncated(given):
        raise EOFError("Ran out of input")

    monkeypatch.setattr("audit.report.gate.compare.load_run", truncated)
    code, _, err = run(["compare", *runs], capsys)
    assert code == 3 and err.strip().splitlines() == ["audit: internal error: EOFError: Ran out of input (rerun with --debug and report it)"]


def test_a_real_keyboard_interrupt_is_130_with_its_line(runs, monkeypatch, capsys) -> None:
    def interrupted(given):
        raise KeyboardInterrupt

    monkeypatch.setattr("audit.report.gate.compare.load_run", interrupted)
    code, _, err = run(["compare", *runs], capsys)
    assert code == 130 and err.strip().splitlines() == ["audit: interrupted; results written so far are kept"]


# --- audit report -------------------------------------------------------------------------------

def test_report_on_a_binary_results_json(tmp_path: Path, capsys) -> None:
    (tmp_path / "results.json").write_bytes(b"\xff\xfe\x00garbage")
    code, _, err = run(["report", tmp_path], capsys)
    assert_one_line_error(code, err, str(tmp_path / "results.json"), "byte 0xff at offset 0", "UTF-8")


def test_report_on_a_results_json_nested_beyond_the_recursion_limit(tmp_path: Path, capsys) -> None:
    (tmp_path / "results.json").write_text("[" * 100000 + "]" * 100000)
    code, _, err = run(["report", tmp_path], capsys)
    assert_one_line_error(code, err, str(tmp_path / "results.json"), "nested too deeply")


def test_report_names_the_path_given(tmp_path: Path, capsys) -> None:
    code, _, err = run(["report", tmp_path / "nope"], capsys)
    assert_one_line_error(code, err, f"{tmp_path / 'nope'}: not found")
    assert "nope/results.json" not in err


def test_report_out_below_a_file(runs, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "model.onnx"
    blocker.write_bytes(b"not a folder")
    code, _, err = run(["report", runs[0], "--out", blocker / "r.pdf"], capsys)
    assert_one_line_error(code, err, "--out", f"lies below the file {blocker}")
    assert blocker.read_bytes() == b"not a folder"


# --- audit compare: output paths ----------------------------------------------------------------

@pytest.mark.parametrize("flag", ["--pdf", "--junit"])
def test_compare_output_that_is_a_folder(flag, runs, tmp_path: Path, capsys) -> None:
    code, _, err = run(["compare", *runs, flag, tmp_path], capsys)
    assert_one_line_error(code, err, flag, "is a folder")


@pytest.mark.parametrize("flag, side, name", [("--pdf", 1, "results.json"), ("--junit", 0, "per_image.csv"),
                                              ("--pdf", 0, "maps/gradient.npz"), ("--junit", 1, "results.json")])
def test_compare_refuses_to_overwrite_an_input(flag, side, name, runs, capsys) -> None:
    target = runs[side] / name
    before = {p: sha(p) for run_dir in runs for p in run_dir.rglob("*") if p.is_file()}
    code, _, err = run(["compare", *runs, flag, target, "--fail-on", "performance.n < 0"], capsys)
    assert_one_line_error(code, err, flag, str(target), "would overwrite the input")
    assert {p: sha(p) for p in before} == before


def test_compare_pdf_and_junit_below_a_file(runs, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(["compare", *runs, "--junit", blocker / "j.xml"], capsys)
    assert_one_line_error(code, err, "--junit", "lies below the file")


# --- gate ---------------------------------------------------------------------------------------

def test_a_deeply_nested_gate_config(runs, tmp_path: Path, capsys) -> None:
    config = tmp_path / "nested.toml"
    config.write_text("a = " + "[" * 100000 + "]" * 100000 + "\n")
    code, _, err = run(["compare", *runs, "--config", config], capsys)
    assert_one_line_error(code, err, str(config), "nested too deeply")


@pytest.mark.parametrize("threshold", ["1" + "0" * 400, "1e999", "-1e400"])
def test_a_threshold_beyond_float_range_is_refused(threshold, runs, capsys) -> None:
    """float('1' + 400 zeros) is inf: 'auc < inf' would always hold (exit 1) whatever the model."""
    code, _, err = run(["compare", *runs, "--fail-on", f"performance.auc < {threshold}"], capsys)
    assert_one_line_error(code, err, "--fail-on", "beyond the largest float")


def test_a_large_finite_threshold_still_works(runs, capsys) -> None:
    code, _, err = run(["compare", *runs, "--fail-on", "performance.auc > 1e300"], capsys)
    assert code == 0, err


# --- model-input and class-name flags -----------------------------------------------------------

SIZES = [(["--input-size", "-5", "-5"], "--input-size -5 -5"), (["--input-size", "28", "0"], "--input-size 28 0")]
CHANNELS = [(["--channels", "-1"], "--channels -1"), (["--channels", "0"], "--channels 0")]


@pytest.mark.parametrize("command, flags, named", [
    *((command, *case) for command in ("run", "finetune", "counterfactual") for case in SIZES + CHANNELS),
])
def test_input_size_and_channels_must_be_positive(command, flags, named, tiny_model_files, tmp_path: Path, capsys) -> None:
    required = {"run": ["--data", tmp_path], "finetune": ["--data", tmp_path, "--valid", tmp_path, "--loss", "none"],
                "counterfactual": ["--data", tmp_path, "--autoencoder", tmp_path / "ae.pt"]}[command]
    code, _, err = run([command, tiny_model_files["torchscript"], *required, "--out", tmp_path / "o", *flags], capsys)
    assert_one_line_error(code, err, named, "≥ 1")


@pytest.mark.parametrize("names, named", [("a,a", "'a' given more than once"), ("a,", "a name is empty")])
def test_class_names_must_be_distinct_and_non_empty(names, named, synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    code, _, err = run(["run", tiny_model_files["onnx"], "--data", synthetic_root / "valid" / "images",
                        "--out", tmp_path / "o", "--class-names", names], capsys)
    assert_one_line_error(code, err, "--class-names", named)
    assert not (tmp_path / "o" / "results.json").exists()


# --- finetune flags and checkpoints -------------------------------------------------------------

def finetune_args(root: Path, model: Path, out: Path, *extra) -> list:
    return ["finetune", model, "--data", root / "train" / "images", "--regions", root / "train" / "regions",
            "--valid", root / "valid" / "images", "--out", out, "--quiet", "--batch-size", "4", "--epochs", "1", *extra]


@pytest.mark.parametrize("flags, named", [
    (["--loss", "gradmask", "--lambda-grad", "inf"], "--lambda-grad inf: give a positive number"),
    (["--loss", "actdiff", "--lambda-act", "inf"], "--lambda-act inf: give a positive number"),
    (["--loss", "none", "--lr", "inf"], "--lr inf: give a positive number"),
    (["--loss", "actdiff", "--mask-fraction", "0"], "--mask-fraction 0: must be a fraction in (0, 1]"),
    (["--loss", "actdiff", "--mask-fraction", "nan"], "--mask-fraction nan: must be a fraction in (0, 1]"),
    (["--loss", "actdiff", "--layers", ""], "--layers '': give at least one layer name"),
    (["--loss", "actdiff", "--layers", " , "], "--layers ' , ': give at least one layer name"),
])
def test_finetune_numbers_and_layers(flags, named, synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    code, _, err = run(finetune_args(synthetic_root, tiny_model_files["onnx"], tmp_path / "o", *flags), capsys)
    assert_one_line_error(code, err, named)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _hostile_checkpoints(tmp_path: Path) -> dict:
    marker = tmp_path / "payload-ran"
    return {"garbage": lambda p: p.write_bytes(b"garbage"), "empty dict": lambda p: torch.save({}, p),
            "pickle payload": lambda p: torch.save({"a": _Payload(marker)}, p), "marker": marker}


@pytest.mark.parametrize("kind, why", [("garbage", "cannot be read as a checkpoint of tensors"), ("empty dict", "lacks"),
                                       ("pickle payload", "cannot be read as a checkpoint of tensors")])
def test_a_hostile_checkpoint_is_ignored_and_training_starts_fresh(kind, why, synthetic_root, tmp_path) -> None:
    """Reference: the same training without any checkpoint; the payload never runs."""
    from audit.errors import AuditWarning
    from audit.finetune.data import Split
    from audit.finetune.losses import losses
    from audit.finetune.training import TrainConfig, TrainingData, train
    from audit.data.dataset import open_dataset
    from audit.models.spec import InputSpec

    spec = InputSpec(channels=1, height=28, width=28)
    train_set = open_dataset(synthetic_root / "train" / "images", size=(28, 28), channels=1, regions=synthetic_root / "train" / "regions")
    valid = Split.read(open_dataset(synthetic_root / "valid" / "images", size=(28, 28), channels=1), 8)
    config = TrainConfig(loss="actdiff", epochs=1, lr=1e-2, batch_size=4, seed=3, patience=None)

    def fit(checkpoint: Path):
        torch.manual_seed(0)
        model = TinyCNN()
        result = train(model, losses.get("actdiff"), TrainingData(Split.read(train_set, 4), spec, "regions"), valid, config, checkpoint)
        return model, result

    (tmp_path / "fresh").mkdir()
    fresh, _ = fit(tmp_path / "fresh" / "actdiff-seed0.pt")
    hostile = _hostile_checkpoints(tmp_path)
    checkpoint = tmp_path / "checkpoints" / "actdiff-seed0.pt"
    checkpoint.parent.mkdir()
    hostile[kind](checkpoint)
    with pytest.warns(AuditWarning, match=f"checkpoints/actdiff-seed0.pt: {why}.*starts from the beginning"):
        model, result = fit(checkpoint)
    assert not hostile["marker"].exists()
    assert [log.epoch for log in result.history] == [1]
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))


def test_finetune_with_a_payload_checkpoint_in_out_warns_and_trains(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    (out / "checkpoints").mkdir(parents=True)
    hostile = _hostile_checkpoints(tmp_path)
    hostile["pickle payload"](out / "checkpoints" / "actdiff-seed0.pt")
    code, _, err = run(finetune_args(synthetic_root, tiny_model_files["onnx"], out, "--loss", "actdiff"), capsys)
    assert code == 0, err
    assert not hostile["marker"].exists()
    assert "audit: warning: checkpoints/actdiff-seed0.pt: cannot be read" in err and "Traceback" not in err
    assert (out / "results.json").is_file()


# --- plugins ------------------------------------------------------------------------------------

BAD_PLUGINS = {
    # group, name, module source (the entry point is module:Thing)
    "evil_function_reader": ("audit.readers", ".png", "def Thing(path):\n    raise RuntimeError('reader boom')\n"),
    "evil_number_method": ("audit.methods", "notclass", "Thing = 42\n"),
    "evil_exit_method": ("audit.methods", "exiter", "raise SystemExit(0)\n"),
    "evil_interrupt_reader": ("audit.readers", "kbd", "raise KeyboardInterrupt\n"),
    "evil_base_loss": ("audit.losses", "baseloss", "raise BaseException('odd')\n"),
    "evil_number_loss": ("audit.losses", "numberloss", "Thing = 7\n"),
}


@pytest.fixture
def bad_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    packages = {module.replace("_", "-"): (f"[{group}]\n{name} = {module}:Thing\n", {module: source})
                for module, (group, name, source) in BAD_PLUGINS.items()}
    with installed_plugins(tmp_path / "site", packages, monkeypatch) as root:
        yield root


def test_bad_plugins_are_listed_as_failed(bad_plugins, capsys) -> None:
    code, out, err = run(["plugins"], capsys)
    assert code == 0, err
    failed = [line for line in out.splitlines() if line.startswith("failed to load")]
    assert len(failed) == len(BAD_PLUGINS), out
    assert any("'notclass'" in line and "is not a subclass of audit.saliency.base.SaliencyMethod" in line for line in failed)
    assert any("'.png'" in line and "is not a reader" in line for line in failed)
    assert any("'exiter'" in line and "SystemExit" in line for line in failed)
    assert any("'kbd'" in line and "KeyboardInterrupt" in line for line in failed)
    assert any("'numberloss'" in line and "is not callable" in line for line in failed)


def test_a_run_ignores_bad_plugins_it_does_not_name(bad_plugins, synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    code, _, err = run(["run", tiny_model_files["onnx"], "--data", synthetic_root / "valid" / "images", "--out", tmp_path / "o",
                        "--quiet", "--method", "gradient", "--randomization-images", "0"], capsys)
    assert code == 0, err
    assert (tmp_path / "o" / "results.json").is_file()


@pytest.mark.parametrize("name, reason", [("notclass", "is not a subclass"), ("exiter", "SystemExit")])
def test_a_bad_plugin_asked_for_is_one_line(name, reason, bad_plugins, synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    code, _, err = run(["run", tiny_model_files["onnx"], "--data", synthetic_root / "valid" / "images", "--out", tmp_path / "o",
                        "--quiet", "--method", name], capsys)
    assert_one_line_error(code, err, f"saliency method {name!r}", "failed to load", reason)


# --- the PDF with many classes ------------------------------------------------------------------

def test_a_1000_output_model_on_two_class_data_gets_a_bounded_report(synthetic_root, tmp_path, capsys) -> None:
    """Every class name in one table cell made a row 1030 pt tall (LayoutError); the per-class
    figures drew 1000 groups. Now: 12 names and a count, figures with the classes that have images."""
    torch.manual_seed(0)
    model = export_onnx(TinyCNN(classes=1000), tmp_path / "c1000.onnx")
    valid = synthetic_root / "valid"
    code, _, err = run(["run", model, "--data", valid / "images", "--masks", valid / "artefacts", "--out", tmp_path / "o",
                        "--quiet", "--method", "gradient", "--randomization-images", "0"], capsys)
    assert code == 0, err
    text = "\n".join(page.extract_text() for page in PdfReader(tmp_path / "o" / "report.pdf").pages)
    assert "0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, … and 988 more" in text
    assert "998 of the model's 1000 classes have no images and are not shown." in text


def test_an_interrupted_run_names_the_folder_it_kept(synthetic_root, tiny_model_files, tmp_path, monkeypatch, capsys) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("audit.pipeline.finish_run", interrupted)  # after the images: the partial rows are written
    valid = synthetic_root / "valid"
    code, _, err = run(["run", tiny_model_files["onnx"], "--data", valid / "images", "--out", tmp_path / "o", "--quiet",
                        "--randomization-images", "0"], capsys)
    [line] = err.strip().splitlines()
    kept = Path(line.split(" kept in ")[1])
    assert code == 130 and line.startswith("audit: interrupted; results written so far are kept in ")
    assert kept.parent == tmp_path / "o" / ".partial" and (kept / "per_image.partial.csv").is_file()
