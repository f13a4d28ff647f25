"""Training: the validation loss falls on the crosses, runs are deterministic, freezing keeps the
trunk, and a model whose BatchNorm an exporter folded trains with BatchNorm put back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from audit.data.dataset import open_dataset
from audit.errors import AuditError
from audit.finetune.data import Split
from audit.finetune.normalisation import WithBatchNorm
from audit.finetune.wildcat.network import build_wildcat
from audit.finetune.wildcat.training import WildcatConfig, bce, prepare, train_wildcat, validate
from audit.models.loader import ModelOptions, load_classifier
from tests.conftest import TinyCNN, export_onnx

OPTIONS = ModelOptions(input_size=(28, 28), channels=1)


def _splits(root: Path) -> tuple[Split, Split]:
    read = lambda split: Split.read(open_dataset(root / split / "images", size=(28, 28), channels=1), 8)  # noqa: E731
    return read("train"), read("valid")


def _run(path: Path, root: Path, **config) -> tuple:
    classifier = load_classifier(path, OPTIONS)
    train, valid = _splits(root)
    net = build_wildcat(classifier, maps=2, k_max=0.2, k_min=0.2, alpha=0.7)
    settings = WildcatConfig(**{"epochs": 3, "lr": 1e-2, "batch_size": 8, "seed": 1, **config})
    net = prepare(net, classifier, train, settings)
    before = validate(net, valid, classifier.spec, 8, False)[0]
    return net, before, train_wildcat(net, train, valid, classifier.spec, settings)


def test_bce_is_one_vs_rest_on_one_hot_labels() -> None:
    scores = torch.tensor([[2.0, -1.0], [0.5, 0.25]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    expected = -(y * torch.log(torch.sigmoid(scores)) + (1 - y) * torch.log(1 - torch.sigmoid(scores))).mean()
    assert bce(scores, torch.tensor([0, 1])).item() == pytest.approx(expected.item(), rel=1e-6)


def test_a_short_run_lowers_the_validation_loss_and_is_deterministic(tiny_model_files: dict, synthetic_root: Path) -> None:
    net, before, result = _run(tiny_model_files["onnx"], synthetic_root)
    again, _, repeated = _run(tiny_model_files["onnx"], synthetic_root)
    assert result.best_loss < before
    assert [h.valid_loss for h in result.history] == [h.valid_loss for h in repeated.history]
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))


def test_freeze_features_trains_the_head_only(tiny_model_files: dict, synthetic_root: Path) -> None:
    classifier = load_classifier(tiny_model_files["onnx"], OPTIONS)
    start = {k: v.clone() for k, v in build_wildcat(classifier, maps=2).state_dict().items()}
    net, _, result = _run(tiny_model_files["onnx"], synthetic_root, freeze_features=True)
    assert not isinstance(net.trunk, WithBatchNorm) and result.best_epoch >= 1
    state = net.state_dict()
    assert all(torch.equal(state[k], v) for k, v in start.items() if k.startswith("trunk."))
    assert not torch.equal(state["head.transfer.weight"], start["head.transfer.weight"])


def test_a_folded_batch_norm_onnx_model_trains_with_batch_norm_put_back(tmp_path: Path, synthetic_root: Path) -> None:
    torch.manual_seed(0)
    path = export_onnx(TinyCNN(), tmp_path / "folded.onnx")  # legacy exporter: BatchNorm folded into the first conv
    net, before, result = _run(path, synthetic_root)
    assert isinstance(net.trunk, WithBatchNorm) and net.trunk.names
    assert result.best_loss < before


def test_bad_training_options_are_one_line_errors(tiny_model_files: dict, synthetic_root: Path) -> None:
    with pytest.raises(AuditError, match="--lr -1"):
        _run(tiny_model_files["onnx"], synthetic_root, lr=-1.0)
