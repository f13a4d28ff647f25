"""``audit run`` end to end on real files, and every bad input from the issue."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from audit.cli.main import main
from tests.conftest import assert_one_line_error, export_onnx


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def valid_args(root: Path, model: Path, out: Path) -> list:
    valid = root / "valid"
    return ["run", model, "--data", valid / "images", "--masks", valid / "artefacts", "--regions", valid / "regions", "--out", out, "--quiet"]


def test_run_writes_results_that_match_an_independent_computation(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code, _, err = run(valid_args(synthetic_root, tiny_model_files["onnx"], out) + ["--method", "occlusion"], capsys)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    table = pd.read_csv(out / "per_image.csv")
    assert not (out / "per_image.partial.csv").exists()
    assert results["data"]["images"] == len(table) == 24
    assert results["data"]["with_artefact"] == 24 and results["data"]["with_region"] == 24
    assert results["model"]["format"] == "onnx" and len(results["model"]["sha256"]) == 64
    assert results["model"]["classes"] == ["0-one-cross", "1-two-crosses"]
    # independent reference: the torch module on the same images, sklearn's AUROC
    from skimage.io import imread

    images = np.stack([imread(synthetic_root / "valid" / "images" / p) / 255.0 for p in table.path]).astype(np.float32)
    with torch.no_grad():
        probabilities = torch.softmax(tiny_model_files["module"](torch.from_numpy(images)[:, None]), dim=1).numpy()
    np.testing.assert_allclose(table.probability, probabilities.max(axis=1), atol=1e-5)
    assert results["performance"]["accuracy"] == pytest.approx(np.mean(probabilities.argmax(1) == table.label))
    assert results["performance"]["auc"] == pytest.approx(roc_auc_score(table.label, probabilities[:, 1]))
    masks = [imread(synthetic_root / "valid" / "artefacts" / p) > 0 for p in table.path]
    assert list(table.artefact_pixels) == [int(m.sum()) for m in masks]
    assert "occlusion" in results["methods"]


@pytest.mark.parametrize("target", ["label", "1"])
def test_a_non_default_target_drives_maps_ablation_and_their_correlation(target, synthetic_root, tmp_path, capsys) -> None:
    """The biased sample model (ONNX) against its TorchScript twin in torch: the maps, the
    ablation's probability change and their correlation are all for the explained class."""
    from scipy import stats
    from skimage.io import imread

    models = Path(__file__).resolve().parents[2] / "sample_models"
    out = tmp_path / "out"
    args = valid_args(synthetic_root, models / "biased.onnx", out) + ["--method", "gradient", "--randomization-images", "0", "--target", target]
    code, _, err = run(args, capsys)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    table = pd.read_csv(out / "per_image.csv")
    valid = synthetic_root / "valid"
    images = np.stack([imread(valid / "images" / p) / 255.0 for p in table.path]).astype(np.float32)[:, None]
    artefact = np.stack([imread(valid / "artefacts" / p) > 0 for p in table.path])
    classes = table.label.to_numpy() if target == "label" else np.full(len(table), int(target))
    # independent reference: the TorchScript file in torch, autograd, and the ablation by hand
    module = torch.jit.load(str(models / "biased.pt")).eval()
    x = torch.from_numpy(images).requires_grad_(True)
    logits = module(x)
    (gradient,) = torch.autograd.grad(logits.gather(1, torch.tensor(classes)[:, None]).sum(), x)
    g = gradient.abs()[:, 0].numpy().astype(np.float64)
    area = artefact.sum(axis=(1, 2)) / artefact[0].size
    enrichment = (g * artefact).sum(axis=(1, 2)) / g.sum(axis=(1, 2)) / area
    ablated = np.where(artefact[:, None], images.mean(axis=(2, 3), keepdims=True), images)
    with torch.no_grad():
        before = torch.softmax(logits, dim=1).numpy()
        after = torch.softmax(module(torch.from_numpy(ablated)), dim=1).numpy()
    rows = np.arange(len(table))
    predictions = before.argmax(axis=1)
    assert table.prediction.tolist() == predictions.tolist() and table.target.tolist() == classes.tolist()
    np.testing.assert_allclose(table["gradient.artefact_enrichment"], enrichment, rtol=1e-3)
    np.testing.assert_allclose(table.ablation_artefact_delta, after[rows, classes] - before[rows, classes], atol=1e-4)
    assert table.ablation_artefact_same.tolist() == (after.argmax(axis=1) == predictions).astype(float).tolist()
    rho = stats.spearmanr(enrichment, before[rows, classes] - after[rows, classes])[0]
    assert results["methods"]["gradient"]["saliency_vs_ablation"]["spearman"] == pytest.approx(rho, abs=1e-3)
    assert results["target"] == target
    names = results["model"]["classes"]
    assert results["explained"]["by_class"] == {names[k]: int(c) for k, c in zip(*np.unique(classes, return_counts=True))}
    assert results["explained"]["not_predicted"] == int((classes != predictions).sum()) > 0


def test_target_label_on_an_unlabelled_image_is_one_line(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    for name in ("a.png", "b.png"):
        shutil.copy(next((synthetic_root / "valid" / "images").rglob("*.png")), tmp_path / name)
    (tmp_path / "manifest.csv").write_text("path,label\na.png,0\nb.png,\n")
    args = ["run", tiny_model_files["onnx"], "--data", tmp_path / "manifest.csv", "--out", tmp_path / "o", "--quiet", "--method", "occlusion"]
    assert_one_line_error(*run(args + ["--target", "label"], capsys)[::2], "b.png: --target label needs a label")
    assert_one_line_error(*run(args + ["--target", "2"], capsys)[::2], "--target '2'", "0..1")


def test_json_flag_prints_results_on_stdout_only(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    args = valid_args(synthetic_root, tiny_model_files["onnx"], tmp_path / "o")
    args.remove("--quiet")
    code, out, err = run(args + ["--method", "occlusion", "--json"], capsys)
    assert code == 0
    assert json.loads(out)["data"]["images"] == 24
    assert "onnxruntime provider: CPUExecutionProvider" in err


def test_same_seed_same_results(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    for name in ("a", "b"):
        assert run(valid_args(synthetic_root, tiny_model_files["onnx"], tmp_path / name) + ["--method", "occlusion", "--seed", "7"], capsys)[0] == 0
    assert (tmp_path / "a" / "per_image.csv").read_text() == (tmp_path / "b" / "per_image.csv").read_text()


# --- bad input -------------------------------------------------------------------------------


@pytest.fixture()
def broken_data(synthetic_root: Path, tmp_path: Path) -> Path:
    """A copy of the valid split with one corrupt image, one mask of another size, one corrupt mask."""
    root = tmp_path / "broken"
    shutil.copytree(synthetic_root / "valid", root)
    images = sorted((root / "images").rglob("*.png"))
    images[0].write_bytes(b"not a png")
    from skimage.io import imsave

    imsave(root / "artefacts" / images[1].relative_to(root / "images"), np.zeros((56, 56), np.uint8), check_contrast=False)
    (root / "artefacts" / images[2].relative_to(root / "images")).write_bytes(b"garbage")
    return root


def test_unreadable_images_are_skipped_and_listed(broken_data, tiny_model_files, tmp_path, capsys) -> None:
    out = tmp_path / "o"
    args = ["run", tiny_model_files["onnx"], "--data", broken_data / "images", "--masks", broken_data / "artefacts", "--out", out, "--quiet", "--method", "occlusion"]
    code, _, err = run(args, capsys)
    assert code == 0, err
    data = json.loads((out / "results.json").read_text())["data"]
    assert data["images"] == 23
    images = sorted((broken_data / "images").rglob("*.png"))
    assert [s["path"] for s in data["skipped"]] == [images[0].relative_to(broken_data / "images").as_posix()]
    assert data["skipped"][0]["reason"]
    assert data["masks_resized"] == 1
    assert [Path(m["path"]).name for m in data["masks_unreadable"]] == [images[2].name]
    assert data["with_artefact"] == 22  # 23 images read, one of them with an unreadable mask



def test_strict_fails_on_the_unreadable_image(broken_data, tiny_model_files, tmp_path, capsys) -> None:
    args = ["run", tiny_model_files["onnx"], "--data", broken_data / "images", "--out", tmp_path / "o", "--quiet", "--strict", "--method", "occlusion"]
    first = sorted((broken_data / "images").rglob("*.png"))[0].name
    assert_one_line_error(*run(args, capsys)[::2], first, "unreadable")


def test_missing_model(synthetic_root, tmp_path, capsys) -> None:
    code, _, err = run(valid_args(synthetic_root, tmp_path / "nope.onnx", tmp_path / "o"), capsys)
    assert_one_line_error(code, err, "nope.onnx", "not found")


def test_channel_mismatch_names_both(synthetic_root, tmp_path, capsys) -> None:
    from tests.conftest import TinyCNN

    model = export_onnx(TinyCNN(channels=3), tmp_path / "rgb.onnx", shape=(3, 28, 28))
    code, _, err = run(valid_args(synthetic_root, model, tmp_path / "o") + ["--method", "occlusion"], capsys)
    assert_one_line_error(code, err, "1 channel", "3")


class NaNModel(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x.mean(dim=(1, 2, 3))[:, None] - 2.0).repeat(1, 2)


def test_nan_outputs_are_an_error_and_rows_written_are_kept(synthetic_root, tmp_path, capsys) -> None:
    model = export_onnx(NaNModel(), tmp_path / "nan.onnx")
    out = tmp_path / "o"
    code, _, err = run(valid_args(synthetic_root, model, out) + ["--method", "occlusion"], capsys)
    assert_one_line_error(code, err, "nan.onnx", "NaN")
    staged = list((out / ".partial").glob("*/per_image.partial.csv"))
    assert len(staged) == 1 and str(staged[0].parent) in err.replace("\n", "")
    assert not (out / "results.json").exists()


def test_empty_dataset(tiny_model_files, tmp_path, capsys) -> None:
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    code, _, err = run(["run", tiny_model_files["onnx"], "--data", tmp_path / "empty", "--out", tmp_path / "o", "--quiet"], capsys)
    assert_one_line_error(code, err, "empty", "no images found", ".png")


def test_unknown_method_suggests_the_closest(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    code, _, err = run(valid_args(synthetic_root, tiny_model_files["onnx"], tmp_path / "o") + ["--method", "gradcam"], capsys)
    assert_one_line_error(code, err, "gradcam", "grad-cam")


def test_bad_method_option(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    args = valid_args(synthetic_root, tiny_model_files["onnx"], tmp_path / "o") + ["--method", "occlusion", "--option", "occlusion.no_such=3"]
    assert_one_line_error(*run(args, capsys)[::2], "occlusion")


def test_grad_cam_without_pooling_or_tokens_has_no_default_layer(synthetic_root, tmp_path, capsys) -> None:
    model = export_onnx(nn.Sequential(nn.Flatten(), nn.Linear(784, 2)), tmp_path / "linear.onnx")
    code, _, err = run(valid_args(synthetic_root, model, tmp_path / "o") + ["--method", "grad-cam"], capsys)
    assert_one_line_error(code, err, "grad-cam", "no default layer", "feature maps or tokens", "audit layers MODEL")


def test_console_script_exit_code_and_debug_traceback(tmp_path) -> None:
    audit = Path(sys.executable).with_name("audit")
    plain = subprocess.run([audit, "run", tmp_path / "x.onnx", "--data", tmp_path], capture_output=True, text=True)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr and "x.onnx" in plain.stderr
    debug = subprocess.run([audit, "run", tmp_path / "x.onnx", "--data", tmp_path, "--debug"], capture_output=True, text=True)
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_fail_on_gates_the_exit_code_and_writes_gate_junit_and_report(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    import xml.etree.ElementTree as ET

    from pypdf import PdfReader

    out = tmp_path / "o"
    base = valid_args(synthetic_root, tiny_model_files["onnx"], out) + ["--method", "gradient", "--randomization-images", "0"]
    code, _, err = run(base + ["--fail-on", "performance.accuracy < 2", "--junit", tmp_path / "j.xml"], capsys)
    assert code == 1, err
    gate = json.loads((out / "results.json").read_text())["gate"]
    assert gate["passed"] is False and gate["checks"][0]["outcome"] == "fail"
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    assert suite.get("tests") == "1" and suite.get("failures") == "1"
    assert len(PdfReader(out / "report.pdf").pages) >= 2
    code, _, err = run(base + ["--fail-on", "performance.accuracy > 2"], capsys)
    assert code == 0, err
    assert json.loads((out / "results.json").read_text())["gate"]["passed"] is True
    code, printed, err = run(base + ["--quiet", "--fail-on", "performance.accuracy < 2", "--fail-on", "data.images < 0"], capsys)
    accuracy = json.loads((out / "results.json").read_text())["performance"]["accuracy"]
    assert code == 1 and printed == ""  # --quiet hides the summary, never the reasons for exit 1
    assert err.splitlines()[-1] == f"audit: gate: FAIL performance.accuracy < 2: {accuracy:.6g} < 2 holds", err
    assert "data.images" not in err  # a passing check is not a failure line
