"""The fine-tuning defaults hold on biased models trained here in several ways (``zoo``), not only
on the committed sample model: BatchNorm kept (TorchScript), BatchNorm folded into the
convolutions by the legacy ONNX exporter's constant folding, and no BatchNorm at all (the
dynamo ONNX exporter). With the defaults actdiff must bring each one from validation AUROC ≈ 0
to ≥ 0.9 within 30 epochs, while plain training for the same epochs stays below chance; a run
forced to collapse must be called collapsed, never improved.

Budget (one idle core): about 3 s to train each biased model and 10–20 s to fine-tune it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from audit.data.dataset import open_dataset
from audit.data.synthetic import make_synthetic
from audit.finetune.experiment import ExperimentConfig, run_experiment
from audit.finetune.training import TrainConfig
from audit.models.loader import ModelOptions, load_classifier
from tests.finetune import zoo

OPTIONS = ModelOptions(input_size=(28, 28), channels=1)
VARIANTS = {
    "batch-norm kept": ("resnet", "torchscript"),
    "batch-norm folded": ("resnet", "onnx-folded"),
    "no batch-norm": ("cnn", "onnx-dynamo"),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("finetune-data"), seed=0, n_train=500, n_valid=128, n_test=2)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("zoo")
    trained = {}
    for kind in {kind for kind, _ in VARIANTS.values()}:
        torch.manual_seed(0)
        trained[kind] = zoo.build(kind)
        zoo.train_biased(trained[kind], seed=0)
    return {name: zoo.export(trained[kind], root / f"{kind}{zoo.EXPORTS[how]}", how) for name, (kind, how) in VARIANTS.items()}


def _experiment(model: Path, data: Path, out: Path, train: TrainConfig) -> dict:
    classifier = load_classifier(model, OPTIONS)
    train_set = open_dataset(data / "train" / "images", size=(28, 28), channels=1, regions=data / "train" / "regions",
                             mask_blur=0.5)
    valid = open_dataset(data / "valid" / "images", size=(28, 28), channels=1, regions=data / "valid" / "regions",
                         masks=data / "valid" / "artefacts")
    return run_experiment(classifier, OPTIONS, train_set, valid, None, ExperimentConfig(train, losses=("actdiff",)), out)


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_actdiff_with_the_defaults_fixes_every_biased_model(variant: str, models: dict, data: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    if variant == "batch-norm folded":
        assert not zoo.onnx_has_batch_norm(models[variant])
    results = _experiment(models[variant], data, tmp_path / "out", TrainConfig(loss="actdiff"))
    assert results["config"]["epochs"] == 30
    assert results["before"]["valid"]["auc"] < 0.3
    actdiff, control = results["arms"]["actdiff"], results["arms"]["none"]
    assert actdiff["valid"]["auc"] >= 0.9, [h["valid_auc"] for h in actdiff["history"]["0"]]
    assert actdiff["test"]["auc"] >= 0.85  # the held-out half, which did not choose the epoch
    assert control["test"]["auc"] < 0.5
    assert results["verdict"]["actdiff"]["generalisation"] == "improved"
    inserted = results["normalisation"]["inserted_batch_norm"]
    assert (inserted == []) == (variant == "batch-norm kept")


@pytest.mark.slow
def test_a_forced_collapse_is_called_collapsed(models: dict, data: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    forced = TrainConfig(loss="actdiff", epochs=5, lr=0.1, lambda_act=1000.0)
    results = _experiment(models["batch-norm folded"], data, tmp_path / "out", forced)
    verdict = results["verdict"]["actdiff"]
    collapse = results["arms"]["actdiff"]["per_seed"][0]["collapse"]
    assert collapse["collapsed"] and 1 <= collapse["epoch"] <= 5 and collapse["signs"]
    assert verdict["generalisation"] == "collapsed" and verdict["collapsed_seeds"] == [0]
    assert "collapsed" in verdict["sentence"] and "improved" not in verdict["sentence"]
