"""Model outputs against data classes, checked before any image is read (``audit.data.compatibility``).

Labels are output indices, so more data classes than outputs, a one-output softmax model, and
``--class-names`` that put a data class at another output are refused with one line (exit 2)
by ``audit run``, ``audit counterfactual`` and ``audit finetune``; a subset of the model's
classes is fine, and the two-logit export the message proposes gives the AUROC of σ(z).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import expit
from sklearn.metrics import roc_auc_score
from torch import nn

from tests.cli.test_run_cli import run
from tests.conftest import TinyCNN, assert_one_line_error, export_onnx

SAMPLE_MODELS = Path(__file__).resolve().parents[2] / "sample_models"
QUICK = ["--quiet", "--method", "gradient", "--randomization-images", "0"]


class TwoLogits(nn.Module):
    """The fix the refusal proposes: logits [-z/2, z/2] of a one-logit model, softmax [1 − σ(z), σ(z)]."""

    def __init__(self, one: nn.Module) -> None:
        super().__init__()
        self.one = one

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.one(x)
        return torch.cat([-z / 2, z / 2], 1)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("outputs")
    torch.manual_seed(1)
    one = TinyCNN(classes=1).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(one).save(str(root / "one.pt"))
    return {"one": one, "one.onnx": export_onnx(one, root / "one.onnx"), "one.pt": root / "one.pt",
            "two-logits.onnx": export_onnx(TwoLogits(one), root / "two-logits.onnx")}


@pytest.fixture(scope="module")
def three_classes(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with classes a, b, c (three images each) and a manifest of the same images with labels 0, 1, 2."""
    root = tmp_path_factory.mktemp("three")
    images = sorted((synthetic_root / "valid" / "images").rglob("*.png"))[:9]
    rows = ["path,label"]
    for i, image in enumerate(images):
        folder = root / "folder" / "abc"[i % 3]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(image, folder / image.name)
        rows.append(f"folder/{'abc'[i % 3]}/{image.name},{i % 3}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


def no_outputs(out: Path) -> None:
    assert not out.exists() or not any(out.iterdir()), sorted(out.iterdir())


@pytest.mark.parametrize("data", ["folder", "manifest.csv"])
def test_more_data_classes_than_outputs_is_one_line_before_the_run(data, three_classes, tiny_model_files, tmp_path, capsys) -> None:
    out = tmp_path / "o"
    args = ["run", tiny_model_files["onnx"], "--data", three_classes / data, "--out", out, *QUICK,
            "--fail-on", "performance.accuracy < 0.5"]
    code, _, err = run(args, capsys)
    named = "c" if data == "folder" else "2"
    assert_one_line_error(code, err, str(three_classes / data), "3 data classes", "has 2 output(s)",
                          "label 2", "an output per class", f"leave the images of {named} out")
    assert err.startswith("audit: error: ")
    no_outputs(out)


@pytest.mark.parametrize("model", ["one.onnx", "one.pt"])
def test_a_one_output_softmax_model_is_refused_with_the_two_logit_fix(model, models, synthetic_root, tmp_path, capsys) -> None:
    out = tmp_path / "o"
    args = ["run", models[model], "--data", synthetic_root / "valid" / "images", "--out", out, *QUICK]
    if model.endswith(".pt"):
        args += ["--input-size", "28", "28", "--channels", "1"]
    code, _, err = run(args, capsys)
    assert_one_line_error(code, err, str(models[model]), "1 output", "AUC 0.5", "torch.cat([-z / 2, z / 2], 1)")
    no_outputs(out)


def test_the_two_logit_fix_gives_the_auroc_of_the_sigmoid(models, synthetic_root, tmp_path, capsys) -> None:
    from skimage.io import imread

    out = tmp_path / "o"
    images = synthetic_root / "valid" / "images"
    code, _, err = run(["run", models["two-logits.onnx"], "--data", images, "--out", out, *QUICK], capsys)
    assert code == 0, err
    table = pd.read_csv(out / "per_image.csv")
    x = np.stack([imread(images / p) / 255.0 for p in table.path]).astype(np.float32)[:, None]
    with torch.no_grad():
        z = models["one"](torch.from_numpy(x))[:, 0].numpy().astype(np.float64)
    p = expit(z)  # the one-logit model's own probability of class 1
    np.testing.assert_allclose(table.probability, np.maximum(p, 1 - p), atol=1e-5)
    assert table.prediction.tolist() == (p > 0.5).astype(int).tolist()
    performance = json.loads((out / "results.json").read_text())["performance"]
    assert performance["auc"] == pytest.approx(roc_auc_score(table.label, p))


def test_multilabel_one_output_on_two_classes_is_refused(models, synthetic_root, tmp_path, capsys) -> None:
    args = ["run", models["one.onnx"], "--data", synthetic_root / "valid" / "images", "--out", tmp_path / "o", "--multilabel", *QUICK]
    assert_one_line_error(*run(args, capsys)[::2], "2 data classes", "has 1 output(s)", "1-two-crosses")


def test_class_names_that_put_a_data_class_at_another_output_are_refused(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    images = synthetic_root / "valid" / "images"
    base = ["run", tiny_model_files["onnx"], "--data", images, "--out", tmp_path / "o", *QUICK]
    code, _, err = run(base + ["--class-names", "1-two-crosses,0-one-cross"], capsys)
    assert_one_line_error(code, err, str(images), "'0-one-cross' is label 0", "--class-names puts '0-one-cross' at output 1")
    code, _, err = run(base + ["--class-names", "0-one-cross,1-two-crosses"], capsys)
    assert code == 0, err
    code, _, err = run(base + ["--class-names", "cat,dog"], capsys)  # names the data does not use: nothing to compare
    assert code == 0, err


def test_a_subset_of_the_models_classes_is_audited(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    shutil.copytree(synthetic_root / "valid" / "images" / "1-two-crosses", tmp_path / "one-class" / "1-two-crosses")
    out = tmp_path / "o"
    code, _, err = run(["run", tiny_model_files["onnx"], "--data", tmp_path / "one-class", "--out", out, *QUICK], capsys)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    assert results["data"]["classes"] == ["1-two-crosses"] and results["model"]["classes"] == ["0", "1"]
    assert results["performance"]["n"] == 12 and "one class" in results["performance"]["auc_reason"]


def test_counterfactual_and_finetune_refuse_too(three_classes, synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    data = three_classes / "folder"
    counterfactual = ["counterfactual", tiny_model_files["onnx"], "--autoencoder", SAMPLE_MODELS / "autoencoder.pt",
                      "--data", data, "--out", tmp_path / "cf", "--quiet"]
    assert_one_line_error(*run(counterfactual, capsys)[::2], str(data), "3 data classes", "has 2 output(s)")
    no_outputs(tmp_path / "cf")
    valid = synthetic_root / "valid"
    finetune = ["finetune", tiny_model_files["onnx"], "--data", valid / "images", "--regions", valid / "regions",
                "--valid", data, "--loss", "actdiff", "--out", tmp_path / "ft", "--quiet"]
    assert_one_line_error(*run(finetune, capsys)[::2], str(data), "3 data classes", "has 2 output(s)")
    no_outputs(tmp_path / "ft")


def test_console_script_refuses_in_one_line(three_classes, tiny_model_files, tmp_path) -> None:
    audit = Path(sys.executable).with_name("audit")
    done = subprocess.run([audit, "run", tiny_model_files["onnx"], "--data", three_classes / "manifest.csv",
                           "--out", tmp_path / "o", *QUICK], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr + done.stdout
    assert [line for line in done.stderr.splitlines() if line.strip()] == [done.stderr.strip()]
    assert done.stderr.startswith("audit: error: ") and "3 data classes" in done.stderr
