"""``audit wildcat`` end to end on tiny models (ONNX, and a --multilabel TorchScript model), and
its bad input: one line, exit 2, before anything trains."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
import torch.nn.functional as F
from pypdf import PdfReader
from sklearn.metrics import average_precision_score
from torch import nn

from audit.cli.main import main
from audit.cli.wildcat_command import wildcat
from audit.data.dataset import open_dataset
from audit.finetune.wildcat.comparison import POST_HOC
from audit.models.files import sha256_of
from audit.models.loader import ModelOptions, load_classifier
from tests.conftest import TinyCNN, assert_one_line_error, export_onnx


def run(arguments: list, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in arguments])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def arguments(root: Path, model: Path, out: Path, *extra) -> list:
    return ["wildcat", model, "--data", root / "train" / "images", "--valid", root / "valid" / "images",
            "--test", root / "test" / "images", "--test-regions", root / "test" / "regions", "--out", out,
            "--epochs", 2, "--batch-size", 8, "--randomization-images", 0, "--quiet", *extra]


@pytest.mark.parametrize(("flag", "value"), [("--maps", "0"), ("--alpha", "-0.5"), ("--k-max", "0"), ("--k-max", "2.5"),
                                             ("--k-min", "-1"), ("--lr", "0")])
def test_bad_head_options_fail_before_anything_loads(flag, value, tmp_path, capsys) -> None:
    missing = tmp_path / "absent"  # nothing exists: the option is refused first
    code, _, err = run(arguments(missing, missing / "m.onnx", tmp_path / "out", flag, value), capsys)
    assert_one_line_error(code, err, f"{flag} {value}")
    assert not (tmp_path / "out").exists()


def test_the_commands_defaults_are_the_libraries() -> None:
    from audit.finetune.wildcat.head import DEFAULTS
    from audit.finetune.wildcat.training import WildcatConfig

    defaults = {name: p.default.default for name, p in inspect.signature(wildcat).parameters.items()
                if hasattr(p.default, "default")}
    assert {k: defaults[k] for k in DEFAULTS} == DEFAULTS
    config = WildcatConfig()
    assert (defaults["lr"], defaults["epochs"], defaults["patience"], defaults["batch_size"]) == \
           (config.lr, config.epochs, config.patience, config.batch_size)


def test_k_larger_than_the_feature_map(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    code, _, err = run(arguments(synthetic_root, tiny_model_files["onnx"], tmp_path / "out", "--k-max", "1000"), capsys)
    assert_one_line_error(code, err, "--k-max 1000", "784")  # TinyCNN's map is 28 × 28


def test_a_target_the_model_does_not_have(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    code, _, err = run(arguments(synthetic_root, tiny_model_files["onnx"], tmp_path / "out", "--target", "5"), capsys)
    assert_one_line_error(code, err, "--target '5'", "0..1")
    assert not (tmp_path / "out" / "results.json").exists()


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_a_model_without_a_spatial_feature_map(synthetic_root, tmp_path, capsys) -> None:
    model = export_onnx(MLP(), tmp_path / "mlp.onnx")
    code, _, err = run(arguments(synthetic_root, model, tmp_path / "out"), capsys)
    assert_one_line_error(code, err, str(model), "spatial feature map")


def reference_utility(model: Path, root: Path) -> float:
    """Localisation utility of the written model computed apart: onnxruntime's class maps of the
    predicted class, bilinearly upsampled by torch, sklearn's AP per image against the region."""
    test = open_dataset(root / "test" / "images", size=(28, 28), channels=1, regions=root / "test" / "regions")
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    scores = []
    for batch in test.batches(64):
        logits, maps = session.run(None, {"input": batch.images.transpose(0, 3, 1, 2).astype(np.float32)})
        chosen = maps[np.arange(len(batch)), logits.argmax(1)]
        upsampled = F.interpolate(torch.from_numpy(chosen)[:, None].double(), size=(28, 28), mode="bilinear",
                                  align_corners=False)[:, 0].numpy()
        scores += [average_precision_score(batch.region[i].ravel() > 0, upsampled[i].ravel()) for i in range(len(batch))]
    return float(np.mean(scores))


def test_onnx_end_to_end_table_1_and_the_model(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code, stdout, err = run(arguments(synthetic_root, tiny_model_files["onnx"], out, "--json"), capsys)
    assert code == 0, err
    results = json.loads(stdout)
    assert results == json.loads((out / "results.json").read_text())
    block = results["wildcat"]
    assert block["options"]["maps"] == 4 and block["cut"]["shape"] == [8, 28, 28]
    assert block["training"]["epochs"] == len(block["training"]["history"]) == 2
    rows = block["table"]
    assert [(r["method"], r["model"]) for r in rows] == [*[(m, "base") for m in POST_HOC], ("wildcat", "wildcat")]
    audits = {name: json.loads((out / name / "results.json").read_text()) for name in ("base", "wildcat")}
    for row in rows:
        region = audits[row["model"]]["methods"][row["method"]]["region"]
        assert row["localisation_utility"] == region["auprc"]["mean"] and row["iou"] == region["iou"]["mean"]
        assert row["pointwise_map"] == region["pointwise_detection"]["map"]
        assert row["classification_auc"] == audits[row["model"]]["performance"]["auc"]
    model = out / block["model"]["path"]
    assert model.name == "model-wildcat.onnx" and block["model"]["sha256"] == sha256_of(model)
    assert rows[-1]["localisation_utility"] == pytest.approx(reference_utility(model, synthetic_root), abs=1e-9)
    assert block["summary"]["wildcat_utility"] == rows[-1]["localisation_utility"]
    assert "audit wildcat" in PdfReader(out / "report.pdf").pages[0].extract_text()
    assert (out / "base" / "per_image.csv").is_file() and (out / "wildcat" / "maps" / "wildcat.npz").is_file()


def test_multilabel_torchscript_end_to_end(synthetic_root, tmp_path, capsys) -> None:
    torch.manual_seed(1)
    model = tmp_path / "multi.pt"
    torch.jit.script(TinyCNN().eval()).save(str(model))
    out = tmp_path / "out"
    code, stdout, err = run(arguments(synthetic_root, model, out, "--multilabel", "--input-size", 28, 28, "--channels", 1,
                                      "--class-names", "one,two", "--k-max", "3", "--k-min", "0"), capsys)
    assert code == 0, err
    assert stdout.startswith("WILDCAT: test AUROC")
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["multilabel"] is True and results["model"]["classes"] == ["one", "two"]
    written = load_classifier(out / "model-wildcat.pt", ModelOptions(input_size=(28, 28), channels=1, multilabel=True))
    assert written.class_maps is not None and written.multilabel
    audit = json.loads((out / "wildcat" / "results.json").read_text())
    assert audit["model"]["multilabel"] is True and audit["performance"]["auc"] is not None
    logits = written.logits(torch.rand(3, 1, 28, 28))
    assert torch.equal(written.probabilities(logits), torch.sigmoid(logits))  # per output, not a softmax
