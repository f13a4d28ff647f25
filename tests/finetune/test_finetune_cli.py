"""``audit finetune`` end to end on a tiny model, and every bad input from the issue (one line, exit 2, before training)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from pypdf import PdfReader

from audit.cli.main import main
from audit.models.loader import load_classifier
from tests.conftest import TinyCNN, export_onnx

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
    arguments = args(synthetic_root, tiny_model_files["onnx"], out, "--loss", "actdiff", "--epochs", "2", "--seeds", "2")
    code, stdout, err = run(arguments, capsys)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    assert list(results["arms"]) == ["actdiff", "none"]
    for arm, block in results["arms"].items():
        assert [row["seed"] for row in block["per_seed"]] == [0, 1]
        assert block["test"]["auc"] == pytest.approx(sum(r["test"]["auc"] for r in block["per_seed"]) / 2)
        assert {"accuracy", "enrichment", "iou"} <= set(block["test"])
        assert [len(h) for h in block["history"].values()] == [2, 2]
    # no --test: the validation set is cut in two, the halves disjoint, and it says so
    data = results["data"]
    assert data["valid_images"] + data["test_images"] == 24 and "cut in two" in data["split"]
    verdict = results["verdict"]["actdiff"]
    assert {"generalisation", "saliency", "agree", "sentence", "auc_difference"} <= set(verdict)
    assert verdict["auc_difference"]["interval"] == "t-interval over 2 seeds"
    assert verdict["sentence"].split()[:3] == stdout.split()[:3] == ["Held-out", "validation", "half"]
    assert [row["loss"] for row in results["table"]] == ["actdiff", "none"]
    page = " ".join(PdfReader(out / "report.pdf").pages[0].extract_text().split())
    assert "audit finetune" in page and "2 seeds (0, 1)" in page
    tuned = load_classifier(out / "model-actdiff.onnx")
    assert tuned.num_classes == 2 and tuned.sha256 != results["model"]["sha256"]
    # a second run resumes from the checkpoints instead of training again; --json: results.json on stdout
    code, stdout, err = run([*arguments, "--json"], capsys)
    assert code == 0, err
    again = json.loads((out / "results.json").read_text())
    assert again["arms"]["actdiff"]["per_seed"] == results["arms"]["actdiff"]["per_seed"]
    assert json.loads(stdout) == again and verdict["sentence"] in err


def test_several_losses_share_one_control_and_make_the_table(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    losses = ["actdiff", "gradmask", "classify-masked"]
    code, stdout, err = run(args(synthetic_root, tiny_model_files["torchscript"], out, "--input-size", 28, 28, "--channels", 1,
                                 "--epochs", "2", "--test", synthetic_root / "test" / "images",
                                 *[a for loss in losses for a in ("--loss", loss)]), capsys)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    assert list(results["arms"]) == [*losses, "none"] and list(results["verdict"]) == losses
    assert len(results["arms"]["none"]["per_seed"]) == 1  # one control for all losses
    assert results["data"]["split"] == "--valid selects epochs, --test reports" and results["data"]["test_images"] == 8
    assert [row["loss"] for row in results["table"]] == [*losses, "none"]
    assert all(verdict["auc_difference"]["interval"] == "bootstrap over 8 images" for verdict in results["verdict"].values())
    assert len(stdout.strip().split("Test AUROC")) == 4  # one sentence per loss
    assert sorted(p.name for p in out.glob("model-*")) == [f"model-{loss}.pt" for loss in sorted(losses)]


def test_unlabelled_report_images_are_left_out_of_the_paired_intervals(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    """A manifest with unlabelled rows: the bootstrap pairs each labelled image's own values."""
    images = sorted((synthetic_root / "valid" / "images").rglob("*.png"))
    rows = ["path,label"] + [f"{p.relative_to(synthetic_root / 'valid' / 'images')},{'' if i % 5 == 4 else p.parent.name}"
                             for i, p in enumerate(images)]
    manifest = synthetic_root / "valid" / "images" / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    try:
        arguments = args(synthetic_root, tiny_model_files["onnx"], tmp_path / "out", "--loss", "actdiff", "--epochs", "1")
        arguments[arguments.index("--valid") + 1] = manifest
        code, _, err = run(arguments, capsys)
    finally:
        manifest.unlink()
    assert code == 0, err
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    verdict = results["verdict"]["actdiff"]
    assert verdict["auc_difference"]["interval"].startswith("bootstrap over")
    assert int(verdict["auc_difference"]["interval"].split()[2]) < results["data"]["test_images"]  # labelled only
    tables = [pd.read_csv(tmp_path / "out" / "audit" / f"{arm}-seed0" / "per_image.csv").set_index("path")
              for arm in ("actdiff", "none")]
    labelled = tables[0]["label"].notna()
    expected = (tables[0]["gradient.region_iou"] - tables[1]["gradient.region_iou"])[labelled].mean()
    assert verdict["saliency_differences"]["IoU with the regions"]["mean"] == pytest.approx(expected, abs=1e-12)
    assert verdict["saliency_differences"]["IoU with the regions"]["ci95"] is not None


def test_three_classes(synthetic_root, tmp_path, capsys) -> None:
    """Softmax over three classes: macro AUROC, ln 3 for the collapse sign, gradmask's contrast."""
    root = tmp_path / "three"
    for split in ("train", "valid"):
        for kind in ("images", "regions", "artefacts"):
            for k, source in enumerate(["0-one-cross", "1-two-crosses", "0-one-cross"]):
                target = root / split / kind / f"{k}-class"
                target.mkdir(parents=True)
                for image in sorted((synthetic_root / split / kind / source).iterdir())[k // 2 :: 2]:
                    shutil.copy(image, target / image.name)
    torch.manual_seed(0)
    model = export_onnx(TinyCNN(classes=3).eval(), tmp_path / "three.onnx")
    out = tmp_path / "out"
    code, _, err = run(args(root, model, out, "--loss", "actdiff", "--loss", "gradmask", "--epochs", "2"), capsys)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    assert all(results["arms"][arm]["test"]["auc"] is not None for arm in ("actdiff", "gradmask", "none"))
    assert load_classifier(out / "model-gradmask.onnx").num_classes == 3


def test_the_gate_reads_the_verdict(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    gate = ["--fail-on", 'verdict.actdiff.generalisation != "improved"', "--fail-on", "arms.none.test.auc > 2",
            "--junit", tmp_path / "junit.xml"]
    code, _, err = run(args(synthetic_root, tiny_model_files["onnx"], out, "--loss", "actdiff", "--epochs", "1", *gate), capsys)
    results = json.loads((out / "results.json").read_text())
    outcomes = [check["outcome"] for check in results["gate"]["checks"]]
    generalisation = results["verdict"]["actdiff"]["generalisation"]
    assert outcomes == ["pass" if generalisation == "improved" else "fail", "pass"]
    assert code == (0 if generalisation == "improved" else 1)
    assert ("FAIL verdict.actdiff.generalisation" in err) == (code == 1)
    assert 'name="verdict.actdiff.generalisation != &quot;improved&quot;"' in (tmp_path / "junit.xml").read_text()


def test_a_gate_on_a_loss_that_is_not_trained(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    arguments = args(synthetic_root, tiny_model_files["onnx"], tmp_path / "o", "--loss", "actdiff",
                     "--fail-on", 'verdict.gradmask.generalisation == "collapsed"')
    _bad(capsys, arguments, "'gradmask' is not in this run (--loss actdiff)", tmp_path / "o")
    arguments = args(synthetic_root, tiny_model_files["onnx"], tmp_path / "o", "--loss", "none",
                     "--fail-on", 'verdict.none.generalisation == "collapsed"')
    _bad(capsys, arguments, "this run has no loss with a verdict (the none control has none) to name in verdict.KEY",
         tmp_path / "o")


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
    _bad(capsys, arguments, "--layers 'conv9': no such layer; closest: ", tmp_path / "o")


def test_validation_set_with_one_class(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    valid = tmp_path / "valid"
    shutil.copytree(synthetic_root / "valid" / "images" / "0-one-cross", valid / "0-one-cross")
    arguments = args(synthetic_root, tiny_model_files["onnx"], tmp_path / "o", "--loss", "gradmask")
    arguments[arguments.index("--valid") + 1] = valid
    _bad(capsys, arguments, "the --valid set has only class '0-one-cross'", tmp_path / "o")


def test_test_set_without_labels(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for image in sorted((synthetic_root / "test" / "images").rglob("*.png"))[:4]:
        shutil.copy(image, flat / f"{image.parent.name}-{image.name}")
    arguments = args(synthetic_root, tiny_model_files["onnx"], tmp_path / "o", "--loss", "actdiff", "--test", flat)
    _bad(capsys, arguments, "the --test set has no labelled images", tmp_path / "o")


def test_a_loss_given_twice(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    arguments = args(synthetic_root, tiny_model_files["onnx"], tmp_path / "o", "--loss", "actdiff", "--loss", "actdiff")
    _bad(capsys, arguments, "--loss actdiff is given 2 times", tmp_path / "o")


@pytest.mark.parametrize("flag", ["--lambda-act", "--lambda-grad", "--lr"])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_weights_and_learning_rate_must_be_positive(flag, value, synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    arguments = args(synthetic_root, tiny_model_files["onnx"], tmp_path / "o", "--loss", "actdiff", flag, value)
    _bad(capsys, arguments, f"{flag} {float(value)}: give a positive number", tmp_path / "o")


def test_regions_or_masks_exactly_one(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    arguments = args(synthetic_root, tiny_model_files["onnx"], tmp_path / "o", "--loss", "none", "--masks", synthetic_root / "train" / "artefacts")
    _bad(capsys, arguments, "give exactly one of --regions", tmp_path / "o")


def test_unknown_loss(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    _bad(capsys, args(synthetic_root, tiny_model_files["onnx"], tmp_path / "o", "--loss", "actdif"), "did you mean 'actdiff'", tmp_path / "o")
