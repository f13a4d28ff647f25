"""One output folder, one run: the lock, staging, publishing the set together, readers that refuse a
mixed folder, output paths that never leave OUT, and output-folder faults as one-line errors.
Concurrency and kill cases run real subprocesses."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from audit.cli.main import main
from tests.conftest import assert_one_line_error, export_onnx

SAMPLES = Path(__file__).resolve().parents[2] / "sample_models"
AUDIT = [sys.executable, "-m", "audit"]


def run(args: list, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def args_for(root: Path, model: Path, out: Path, *extra) -> list:
    valid = root / "valid"
    return ["run", model, "--data", valid / "images", "--masks", valid / "artefacts", "--out", out, "--quiet",
            "--randomization-images", "0", *extra]



def digests(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder`` except the lock and staging folders."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.relative_to(folder).parts[0] in (".lock", ".partial")
    }


def wait_for(condition, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_run_publishes_a_set_whose_index_names_every_file(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code, _, err = run(args_for(synthetic_root, tiny_model_files["onnx"], out, "-m", "gradient", "-m", "occlusion"), capsys)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    outputs = results["run"]["outputs"]
    assert set(outputs) == {"per_image.csv", "maps/gradient.npz", "maps/occlusion.npz", "report.pdf"}
    for name, digest in outputs.items():  # hashlib, independently of the code under test
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert not (out / ".partial").exists() and sorted(p.name for p in out.iterdir()) == [
        ".lock", "maps", "per_image.csv", "report.pdf", "results.json"]
    # a rerun with fewer methods removes the outputs only the previous set had
    code, _, err = run(args_for(synthetic_root, tiny_model_files["onnx"], out, "-m", "gradient"), capsys)
    assert code == 0, err
    assert not (out / "maps" / "occlusion.npz").exists() and (out / "maps" / "gradient.npz").exists()
    # rendering the report again keeps the folder consistent for every reader
    assert main(["report", str(out)]) == 0
    capsys.readouterr()
    code, _, err = run(["compare", out, out], capsys)
    assert code == 0, err


def test_a_folder_mixing_two_runs_is_refused_by_every_reader(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    assert run(args_for(synthetic_root, tiny_model_files["onnx"], first), capsys)[0] == 0
    unbiased = SAMPLES / "unbiased.pt"
    code, _, err = run(args_for(synthetic_root, unbiased, second, "--input-size", 28, 28, "--channels", 1), capsys)
    assert code == 0, err
    shutil.copy(second / "per_image.csv", first / "per_image.csv")  # what a publish killed half-way leaves
    for command in (["report", first], ["compare", second, first], ["compare", first, second]):
        code, _, err = run(command, capsys)
        assert_one_line_error(code, err, "per_image.csv", "mixes two runs")


def test_publish_interrupted_between_renames_leaves_a_folder_readers_refuse(synthetic_root, tiny_model_files, tmp_path, capsys, monkeypatch) -> None:
    out = tmp_path / "out"
    assert run(args_for(synthetic_root, tiny_model_files["onnx"], out, "-m", "gradient"), capsys)[0] == 0
    real_replace = os.replace
    moved: list[str] = []

    def dies_after_the_first_rename(source, target) -> None:
        if ".partial" in str(source) and Path(target).parent == out and moved:
            raise KeyboardInterrupt  # the process stops here, as if killed
        real_replace(source, target)
        moved.append(str(target))

    monkeypatch.setattr(os, "replace", dies_after_the_first_rename)
    code, _, err = run(args_for(synthetic_root, SAMPLES / "unbiased.pt", out, "-m", "gradient", "--input-size", 28, 28, "--channels", 1), capsys)
    monkeypatch.setattr(os, "replace", real_replace)
    assert code == 130
    code, _, err = run(["report", out], capsys)
    assert_one_line_error(code, err, "mixes two runs")


def _start(args: list, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([*AUDIT, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kwargs)


def _staged_rows(out: Path) -> int:
    partial = list((out / ".partial").glob("*/per_image.partial.csv"))
    return len(partial[0].read_text().splitlines()) - 1 if partial else 0


def test_a_second_run_into_a_busy_folder_fails_at_once_naming_the_first(synthetic_root, tiny_model_files, tmp_path) -> None:
    out = tmp_path / "out"
    first = _start(args_for(synthetic_root, tiny_model_files["onnx"], out, "--batch-size", 2, "-m", "occlusion"))
    try:
        wait_for(lambda: _staged_rows(out) >= 2 or first.poll() is not None)
        os.kill(first.pid, signal.SIGSTOP)  # hold it mid-run, lock taken
        second = subprocess.run([*AUDIT, *map(str, args_for(synthetic_root, tiny_model_files["onnx"], out))],
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and "Traceback" not in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1 and f"process {first.pid}" in second.stderr
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    results = json.loads((out / "results.json").read_text())
    table = pd.read_csv(out / "per_image.csv")
    assert len(table) == results["data"]["images"] == 24 and not table.isna().all(axis=1).any()


def test_kill_9_mid_run_keeps_the_previous_set_intact_and_the_rows_computed(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert run(args_for(synthetic_root, tiny_model_files["onnx"], out, "-m", "gradient", "-m", "occlusion"), capsys)[0] == 0
    before = digests(out)
    killed = _start(args_for(synthetic_root, SAMPLES / "unbiased.pt", out, "--input-size", 28, 28, "--channels", 1,
                             "--batch-size", 2, "-m", "occlusion", "-m", "gradient"))
    wait_for(lambda: _staged_rows(out) >= 4 or killed.poll() is not None)
    killed.kill()
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    assert digests(out) == before  # nothing of the killed run is in the published set
    assert _staged_rows(out) >= 4  # its rows are kept in its staging folder
    code, _, err = run(["report", out], capsys)
    assert code == 0, err
    # the next run into the folder works (the kernel dropped the dead run's lock) and keeps the old partial rows
    code, _, err = run(args_for(synthetic_root, tiny_model_files["onnx"], out), capsys)
    assert code == 0, err
    assert _staged_rows(out) >= 4


def _no_bigger_files_than(limit: int):
    def limit_writes() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_writes


def test_a_full_disk_is_one_line_and_the_earlier_results_survive(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert run(args_for(synthetic_root, tiny_model_files["onnx"], out), capsys)[0] == 0
    before = digests(out)
    full = subprocess.run([*AUDIT, *map(str, args_for(synthetic_root, tiny_model_files["onnx"], out))], capture_output=True,
                          text=True, timeout=300, preexec_fn=_no_bigger_files_than(4096))
    assert_one_line_error(full.returncode, full.stderr, str(out), "choose another --out")
    assert digests(out) == before


@pytest.mark.parametrize(
    ("flag", "path", "needle"),
    [
        ("--report", "out/results.json", "would overwrite this run's results.json"),
        ("--report", "out/maps/x.pdf", "would overwrite this run's maps"),
        ("--junit", "out/per_image.csv", "would overwrite this run's per_image.csv"),
        ("--report", "folder", "is a folder"),
        ("--report", "file.txt/r.pdf", "lies below the file"),
    ],
)
def test_an_output_path_that_is_another_output_is_refused_before_the_run(flag, path, needle, synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("x")
    out = tmp_path / "out"
    code, _, err = run(args_for(synthetic_root, tiny_model_files["onnx"], out, flag, tmp_path / path), capsys)
    assert_one_line_error(code, err, flag, needle)
    assert not (out / "results.json").exists() and not list(tmp_path.rglob("*.tmp"))


def test_report_and_junit_on_one_file_are_refused(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    same = tmp_path / "r.xml"
    code, _, err = run(args_for(synthetic_root, tiny_model_files["onnx"], tmp_path / "out", "--report", same, "--junit", same), capsys)
    assert_one_line_error(code, err, "--junit", "--report")


@pytest.mark.parametrize("kind", ["a file", "below a file", "a 300-character name", "unwritable"])
def test_an_out_that_cannot_be_a_folder_is_one_line(kind, synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    (tmp_path / "file").write_text("x")
    out = {
        "a file": tmp_path / "file",
        "below a file": tmp_path / "file" / "out",
        "a 300-character name": tmp_path / ("o" * 300),
        "unwritable": Path("/proc/audit-out"),
    }[kind]
    code, _, err = run(args_for(synthetic_root, tiny_model_files["onnx"], out), capsys)
    assert_one_line_error(code, err, "--out")
    assert (tmp_path / "file").read_text() == "x"


def test_counterfactual_outputs_stay_inside_out_for_manifest_paths_that_climb_out(synthetic_root, tmp_path, monkeypatch, capsys) -> None:
    work = tmp_path / "work"
    shutil.copytree(synthetic_root / "valid" / "images", work / "images")
    images = sorted((work / "images").rglob("*.png"))[:3]
    manifests = work / "manifests"
    manifests.mkdir()
    (manifests / "absolute.csv").write_text(f"path,label\n{images[0]},{images[0].parent.name}\n")
    rows = [f"../images/{p.parent.name}/{p.name},{p.parent.name}" for p in images]
    (manifests / "m.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    inputs = digests(work)
    monkeypatch.chdir(manifests)
    code, _, err = run(["counterfactual", SAMPLES / "biased.onnx", "--autoencoder", SAMPLES / "autoencoder.pt", "--data",
                        "absolute.csv", "--out", "."], capsys)
    assert_one_line_error(code, err, "absolute.csv", "relative")
    code, _, err = run(["counterfactual", SAMPLES / "biased.onnx", "--autoencoder", SAMPLES / "autoencoder.pt", "--data", "m.csv",
                        "--out", ".", "--bound", "20", "--quiet"], capsys)
    assert code == 0, err
    after = digests(work)
    assert {k: v for k, v in after.items() if k in inputs} == inputs  # no input replaced
    new = [name for name in after if name not in inputs]
    assert new and all(name.startswith("manifests/") for name in new)
    assert sorted(n for n in new if n.startswith("manifests/gifs/")) == [
        f"manifests/gifs/outside/{i:06d}-{p.stem}.gif" for i, p in enumerate(images)]
    summary = json.loads((manifests / "summary.json").read_text())
    assert set(summary["run"]["outputs"]) == {n.removeprefix("manifests/") for n in new if not n.endswith(("summary.json", "/.lock"))}


class SigmoidHead(nn.Module):
    def __init__(self, last: nn.Module) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        self.last = last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.body(x))


@pytest.mark.parametrize(
    ("last", "multilabel", "expected"),
    [(nn.Sigmoid(), True, "apply a sigmoid already"), (nn.Softmax(dim=1), False, "apply a softmax already"),
     (nn.Identity(), True, None), (nn.Identity(), False, None)],
)
def test_probabilities_from_the_model_are_not_transformed_twice_silently(last, multilabel, expected, synthetic_root, tmp_path, capsys) -> None:
    model = export_onnx(SigmoidHead(last), tmp_path / "m.onnx")
    out = tmp_path / "out"
    code, _, err = run(args_for(synthetic_root, model, out, *(["--multilabel"] if multilabel else [])), capsys)
    assert code == 0, err
    warnings = json.loads((out / "results.json").read_text())["warnings"]
    warnings = [w for w in warnings if "at chance" not in w and "barely depends" not in w]  # this untrained head's (chance.py)
    if expected is None:
        assert warnings == [] and "apply a" not in err
    else:
        assert len(warnings) == 1 and expected in warnings[0] and "m.onnx" in warnings[0]
        assert f"audit: warning: {warnings[0]}" in " ".join(err.split())


@pytest.mark.parametrize("name", ["results.json", "per_image.csv", "maps/gradient.npz", "maps"])
def test_audit_report_never_writes_over_the_run_it_reports_on(name, synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert run(args_for(synthetic_root, tiny_model_files["onnx"], out), capsys)[0] == 0
    before = digests(out)
    code, _, err = run(["report", out, "--out", out / name], capsys)
    assert_one_line_error(code, err, "--out", name)
    assert digests(out) == before


def test_links_in_out_never_lead_outputs_outside(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    staged = tmp_path / "staged-out"
    staged.mkdir()
    (staged / ".partial").symlink_to(elsewhere)
    code, _, err = run(args_for(synthetic_root, tiny_model_files["onnx"], staged), capsys)
    assert_one_line_error(code, err, ".partial", "is a link")
    linked = tmp_path / "linked-out"
    linked.mkdir()
    (linked / "maps").symlink_to(elsewhere)
    code, _, err = run(args_for(synthetic_root, tiny_model_files["onnx"], linked), capsys)
    assert_one_line_error(code, err, "maps", "a link in")
    assert list(elsewhere.iterdir()) == [] and not (linked / "results.json").exists()
    assert list((linked / ".partial").glob("*/maps/gradient.npz"))  # the outputs are kept in staging


@pytest.mark.parametrize("flag", ["--report", "--junit"])
def test_report_or_junit_over_an_input_is_refused(flag, synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    model = tmp_path / "model.onnx"
    shutil.copy(tiny_model_files["onnx"], model)
    before = model.read_bytes()
    code, _, err = run(args_for(synthetic_root, model, tmp_path / "out", flag, model), capsys)
    assert_one_line_error(code, err, flag, "would overwrite the input")
    image = next((synthetic_root / "valid" / "images").rglob("*.png"))
    code, _, err = run(args_for(synthetic_root, model, tmp_path / "out", flag, image), capsys)
    assert_one_line_error(code, err, flag, "would overwrite the input")
    assert model.read_bytes() == before


def test_out_that_is_or_lies_in_the_data_folder_or_holds_an_input_at_an_output_name(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    data = tmp_path / "data"
    shutil.copytree(synthetic_root / "valid" / "images", data)
    for out in (data, data / "out"):
        code, _, err = run(["run", tiny_model_files["onnx"], "--data", data, "--out", out, "--quiet"], capsys)
        assert_one_line_error(code, err, "--out", "input folder")
    images = sorted(data.rglob("*.png"))[:4]
    out = tmp_path / "out"
    out.mkdir()
    manifest = out / "per_image.csv"  # a manifest that publishing would replace
    manifest.write_text("path,label\n" + "".join(f"{p},{p.parent.name}\n" for p in images))
    code, _, err = run(["run", tiny_model_files["onnx"], "--data", manifest, "--out", out, "--quiet"], capsys)
    assert_one_line_error(code, err, "per_image.csv", "where this run writes")


def test_publish_never_replaces_an_input_and_removes_only_files_it_wrote(tmp_path) -> None:
    from audit.errors import AuditError
    from audit.report.output_folder import OutputFolder
    from audit.report.results_file import write_results

    out = tmp_path / "out"
    out.mkdir()
    model = out / "model-actdiff.onnx"  # e.g. fine-tuning the model that the last run wrote, into the same folder
    model.write_bytes(b"input model")
    with pytest.raises(AuditError, match="would overwrite the input"):
        with OutputFolder(out, "results.json", inputs=(model,)) as folder:
            folder.staged("model-actdiff.onnx").write_bytes(b"fine-tuned")
            folder.publish({"schema": "x"}, write_results)
    assert model.read_bytes() == b"input model" and not (out / "results.json").exists()
    assert [p.read_bytes() for p in (out / ".partial").glob("*/model-actdiff.onnx")] == [b"fine-tuned"]
    # an index listing files we did not write (a hand-edited or hostile results.json) deletes none of them
    (out / "keep.png").write_bytes(b"user file")
    (tmp_path / "outside.txt").write_text("outside")
    listed = {"keep.png": "0" * 64, "../outside.txt": "0" * 64, "model-actdiff.onnx": "0" * 64}
    (out / "results.json").write_text(json.dumps({"schema": "x", "run": {"id": "old", "outputs": listed}}))
    with OutputFolder(out, "results.json") as folder:
        folder.staged("per_image.csv").write_text("path\n")
        folder.publish({"schema": "x"}, write_results)
    assert (out / "keep.png").read_bytes() == b"user file" and (tmp_path / "outside.txt").exists() and model.exists()


def test_counterfactual_never_replaces_a_manifest_image_that_lies_where_an_output_goes(synthetic_root, tmp_path, capsys) -> None:
    data = tmp_path / "d"
    image = sorted((synthetic_root / "valid" / "images" / "0-one-cross").glob("*.png"))[0]
    (data / "0-one-cross").mkdir(parents=True)
    (data / "strips" / "0-one-cross").mkdir(parents=True)
    shutil.copy(image, data / "0-one-cross" / "0000.png")
    shutil.copy(image, data / "strips" / "0-one-cross" / "0000.png")  # an input where the first image's strip goes
    (data / "m.csv").write_text("path,label\n0-one-cross/0000.png,0-one-cross\nstrips/0-one-cross/0000.png,0-one-cross\n")
    before = digests(data)
    code, _, err = run(["counterfactual", SAMPLES / "biased.onnx", "--autoencoder", SAMPLES / "autoencoder.pt", "--data",
                        data / "m.csv", "--out", data, "--bound", "20", "--quiet"], capsys)
    assert_one_line_error(code, err, "strips/0-one-cross/0000.png", "would overwrite the input")
    assert digests(data) == before
