"""The training loop: deterministic given the seed, resumable from its checkpoint, selects the best epoch."""

from __future__ import annotations

from pathlib import Path

import torch

from audit.data.dataset import open_dataset
from audit.finetune.data import Split
from audit.finetune.losses import losses
from audit.finetune.training import TrainConfig, TrainingData, train
from audit.models.spec import InputSpec
from tests.conftest import TinyCNN

torch.set_num_threads(1)
SPEC = InputSpec(1, 28, 28)


def _splits(root: Path, limit: int = 1 << 30) -> tuple[TrainingData, Split]:
    train_set = open_dataset(root / "train" / "images", size=(28, 28), channels=1, regions=root / "train" / "regions", mask_blur=0.5)
    valid = open_dataset(root / "valid" / "images", size=(28, 28), channels=1)
    return TrainingData(Split.read(train_set, 4, limit), SPEC, "regions"), Split.read(valid, 8)


def _run(root: Path, checkpoint: Path, epochs: int, loss: str = "actdiff", limit: int = 1 << 30):
    torch.manual_seed(0)
    model = TinyCNN()
    data, valid = _splits(root, limit)
    config = TrainConfig(loss=loss, epochs=epochs, lr=1e-2, batch_size=4, seed=3, patience=None)
    return model, train(model, losses.get(loss), data, valid, config, checkpoint)


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_deterministic_given_the_seed(synthetic_root: Path, tmp_path: Path) -> None:
    a, _ = _run(synthetic_root, tmp_path / "a.pt", 2)
    b, _ = _run(synthetic_root, tmp_path / "b.pt", 2)
    assert _same(a.state_dict(), b.state_dict())
    assert not _same(a.state_dict(), TinyCNN().state_dict())


def test_streamed_and_in_memory_splits_see_the_same_images(synthetic_root: Path) -> None:
    kept, _ = _splits(synthetic_root)
    streamed, _ = _splits(synthetic_root, limit=0)
    assert kept.split.kept is not None and streamed.split.kept is None
    order = [torch.Generator().manual_seed(1) for _ in range(2)]
    seen = [sorted(float(x.sum()) for batch in data.batches(3, g) for x in batch[0]) for data, g in zip((kept, streamed), order)]
    assert seen[0] == seen[1] and len(seen[0]) == 8


def test_an_interrupted_run_resumes_exactly(synthetic_root: Path, tmp_path: Path) -> None:
    whole, whole_result = _run(synthetic_root, tmp_path / "whole.pt", 3)
    _run(synthetic_root, tmp_path / "resumed.pt", 1)  # "interrupted" after one epoch
    resumed, resumed_result = _run(synthetic_root, tmp_path / "resumed.pt", 3)
    assert _same(whole.state_dict(), resumed.state_dict())
    assert [h.epoch for h in resumed_result.history] == [1, 2, 3]
    assert [h.valid_auc for h in resumed_result.history] == [h.valid_auc for h in whole_result.history]
    saved = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert saved["epoch"] == 3


def test_selects_the_epoch_with_the_best_validation_auc(synthetic_root: Path, tmp_path: Path) -> None:
    _, result = _run(synthetic_root, tmp_path / "c.pt", 3, loss="none")
    aucs = [h.valid_auc for h in result.history]
    assert result.best_auc == max(aucs) and result.history[result.best_epoch - 1].valid_auc == max(aucs)
    assert set(result.history[0].losses) == {"total", "clf"}
