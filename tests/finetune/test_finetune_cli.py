"""``audit finetune`` end to end on a tiny model, and every bad input from the issue (one line, exit 2, before training)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from pypdf import PdfReader

from audit.cli.main import main
from audit.models.loader import load_classifier

torch.set_num_threads(1)


def run(args: list, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def args(root: Path, model: Path, out: Path, *extra) -> list:
    return ["finetune", model, "--data", root / "train" / "images", "--regions", root / "train" / "regions",
            "--valid", root / "valid" / "images", "--valid-regions", root / "valid" / "regions",
            "--valid-masks", root / "valid" / "artefacts", "--out", out, "--quiet", "--batch-size", "4", *extra]


def test_finetune_writes_results_report_and_a_loadable_model(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code, stdout, err = run(args(synthetic_root, tiny_model_files["onnx"], out, "--loss", "actdiff", "--epochs", "2", "--seeds", "2"), capsys)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    for arm in ("before", "control", "after"):
        block = results[arm]["valid"]
        assert len(block["per_seed"]) == 2
        assert block["auc"] == pytest.approx(sum(r["auc"] for r in block["per_seed"]) / 2)
        assert {"accuracy", "enrichment", "iou"} <= set(block)
    assert results["after"]["loss"] == "actdiff" and results["control"]["loss"] == "none"
    assert [len(h) for h in results["after"]["history"].values()] == [2, 2]
    assert [len(h) for h in results["control"]["history"].values()] == [2, 2]
    verdict = results["verdict"]
    assert {"generalisation", "saliency", "agree", "sentence"} <= set(verdict)
    assert verdict["sentence"].split()[0] == stdout.split()[0] == "Validation"
    assert "audit finetune" in PdfReader(out / "report.pdf").pages[0].extract_text()
    tuned = load_classifier(out / "model.onnx")
    assert tuned.num_classes == 2 and tuned.sha256 != results["model"]["sha256"]
    # a second run resumes from the checkpoints instead of training again
    code, _, err = run(args(synthetic_root, tiny_model_files["onnx"], out, "--loss", "actdiff", "--epochs", "2", "--seeds", "2"), capsys)
    assert code == 0, err
    again = json.loads((out / "results.json").read_text())
    assert again["after"]["valid"]["per_seed"] == results["after"]["valid"]["per_seed"]


def _bad(capsys, arguments: list, message: str, out: Path) -> None:
    code, _, err = run(arguments, capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not (out / "checkpoints").exists()


def test_no_training_image_has_a_mask(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    empty = tmp_path / "no-masks"
    empty.mkdir()
    arguments = args(synthetic_root, tiny_model_files["onnx"], tmp_path / "o", "--loss", "actdiff")
    arguments[arguments.index("--regions") + 1] = empty
    _bad(capsys, arguments, "none of the 8 training images has a mask", tmp_path / "o")


def test_unknown_layer_lists_the_valid_ones(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    arguments = args(synthetic_root, tiny_model_files["onnx"], tmp_path / "o", "--loss", "actdiff", "--layers", "conv9")
    _bad(capsys, arguments, "--layers 'conv9': no such layer; valid: features, ", tmp_path / "o")


def test_validation_set_with_one_class(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    valid = tmp_path / "valid"
    shutil.copytree(synthetic_root / "valid" / "images" / "0-one-cross", valid / "0-one-cross")
    arguments = args(synthetic_root, tiny_model_files["onnx"], tmp_path / "o", "--loss", "gradmask")
    arguments[arguments.index("--valid") + 1] = valid
    _bad(capsys, arguments, "the validation set has only class '0-one-cross'", tmp_path / "o")


def test_regions_or_masks_exactly_one(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    arguments = args(synthetic_root, tiny_model_files["onnx"], tmp_path / "o", "--loss", "none", "--masks", synthetic_root / "train" / "artefacts")
    _bad(capsys, arguments, "give exactly one of --regions", tmp_path / "o")


def test_unknown_loss(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    _bad(capsys, args(synthetic_root, tiny_model_files["onnx"], tmp_path / "o", "--loss", "actdif"), "did you mean 'actdiff'", tmp_path / "o")
