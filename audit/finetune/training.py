"""The fine-tuning loop: Adam, model selection and early stopping on validation AUC, a
checkpoint each epoch.

The model trains in eval mode: BatchNorm statistics (and dropout) stay frozen, because
exporters often fuse BatchNorm into the convolution (the same model then trains the same way
whatever its format) and so that the clean and masked halves of an actdiff batch share no
statistics. Each epoch visits the training set in a seeded random order (``data.Split``). Given the seed, a run is deterministic, and a run resumed from its checkpoint
continues exactly as if it had not stopped.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from audit.finetune.data import Split
from audit.finetune.layers import LayerTaps
from audit.finetune.losses import Loss, Step
from audit.finetune.masking import scrambled_pixels
from audit.metrics.performance import Performance
from audit.models.spec import InputSpec


@dataclass(frozen=True)
class TrainConfig:
    """Defaults measured on the synthetic benchmark (biased sample model, 500 images): Adam
    lr 1e-3 and λ_act 1 bring validation AUC from 0.00 to ≥ 0.9 in 24 epochs; the paper's
    lr 1e-4 and λ_act 10 were tuned for 500 epochs from scratch, and λ_act 10 at lr 1e-3
    collapsed the features (valid AUC ≈ 0.5 after 12 epochs)."""

    loss: str
    epochs: int = 30
    lr: float = 1e-3
    lambda_act: float = 1.0
    lambda_grad: float = 10.0
    layers: tuple[str, ...] = ("features",)
    batch_size: int = 32
    seed: int = 0
    patience: int | None = 10  # epochs without a better validation AUC before stopping
    mode: str = "regions"  # which masks define the scrambled pixels: "regions" or "masks"

    def fingerprint(self) -> str:
        """Everything that changes the trajectory except ``epochs`` (so a longer run resumes)."""
        return repr({k: v for k, v in asdict(self).items() if k != "epochs"})


@dataclass
class EpochLog:
    epoch: int
    losses: dict[str, float]  # mean of each loss term over the epoch's batches
    valid_auc: float | None
    valid_accuracy: float | None
    seconds: float


@dataclass
class TrainResult:
    state: dict[str, torch.Tensor]  # the selected (best validation AUC) weights
    best_epoch: int
    best_auc: float | None
    history: list[EpochLog] = field(default_factory=list)
    stopped_early: bool = False


@dataclass
class TrainingData:
    """The training split with the masks the loss uses (``selected``: ``--mask-fraction``)."""

    split: Split
    spec: InputSpec
    mode: str
    selected: set[str] | None = None

    def batches(self, batch_size: int, order: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(x, labels, scrambled, has_mask) in a random order drawn from ``order``."""
        for batch in self.split.batches(batch_size, order):
            scrambled, has_mask = scrambled_pixels(batch, self.mode, self.selected)
            yield self.spec.to_tensor(batch.images), torch.from_numpy(batch.labels), scrambled, has_mask


@torch.no_grad()
def evaluate(model: nn.Module, valid: Split, spec: InputSpec, batch_size: int) -> dict:
    """Accuracy and AUROC (``audit.metrics.performance``) of softmax outputs on ``valid``."""
    performance = Performance()
    for batch in valid.batches(batch_size):
        logits = model(spec.to_tensor(batch.images))
        performance.update(batch.labels, torch.softmax(logits, dim=1).numpy())
    return performance.compute()


def _save(path: Path, payload: dict) -> None:
    partial = path.with_suffix(".partial")
    torch.save(payload, partial)
    partial.replace(path)


def train(
    model: nn.Module,
    loss: Loss,
    data: TrainingData,
    valid: Split,
    config: TrainConfig,
    checkpoint: Path,
    on_batch: Callable[[dict[str, float]], None] = lambda terms: None,
    on_epoch: Callable[[EpochLog], None] = lambda log: None,
) -> TrainResult:
    """Fine-tune ``model`` in place with ``loss`` and return the epoch (1…) with the best
    validation AUC; with ``patience``, stop after that many epochs without a better one.

    ``checkpoint`` is written after every epoch (``torch.save`` of state dicts, atomic) and,
    if it exists with the same configuration, training resumes from it.
    """
    model.eval()
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    order = torch.Generator().manual_seed(config.seed)
    scramble = torch.Generator().manual_seed(config.seed + 1)
    taps = LayerTaps(model, list(config.layers))
    best_state, best_epoch, best_auc, stale = copy.deepcopy(model.state_dict()), 0, None, 0
    history: list[EpochLog] = []
    first = 1
    if checkpoint.is_file():
        saved = torch.load(checkpoint, weights_only=True)
        if saved["fingerprint"] == config.fingerprint():
            model.load_state_dict(saved["model"])
            optimiser.load_state_dict(saved["optimiser"])
            order.set_state(saved["order"])
            scramble.set_state(saved["scramble"])
            best_state, best_epoch, best_auc, stale = saved["best"], saved["best_epoch"], saved["best_auc"], saved["stale"]
            history = [EpochLog(**log) for log in saved["history"]]
            first = saved["epoch"] + 1
    stopped = config.patience is not None and stale >= config.patience
    for epoch in range(first, config.epochs + 1):
        if stopped:
            break
        began = time.perf_counter()
        sums: dict[str, float] = {}
        batches = 0
        for x, labels, scrambled, has_mask in data.batches(config.batch_size, order):
            step = Step(model, x, labels, scrambled, has_mask, taps, config.lambda_act, config.lambda_grad, scramble)
            optimiser.zero_grad(set_to_none=True)
            terms = loss(step)
            terms["total"].backward()
            optimiser.step()
            values = {k: float(v.detach()) for k, v in terms.items()}
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            batches += 1
            on_batch(values)
        scores = evaluate(model, valid, data.spec, config.batch_size)
        log = EpochLog(epoch, {k: v / max(batches, 1) for k, v in sums.items()}, scores["auc"], scores["accuracy"],
                       time.perf_counter() - began)
        history.append(log)
        if best_epoch == 0 or (scores["auc"] is not None and (best_auc is None or scores["auc"] > best_auc)):
            best_state, best_epoch, best_auc, stale = copy.deepcopy(model.state_dict()), epoch, scores["auc"], 0
        else:
            stale += 1
        stopped = config.patience is not None and stale >= config.patience
        _save(checkpoint, {
            "fingerprint": config.fingerprint(), "epoch": epoch, "model": model.state_dict(),
            "optimiser": optimiser.state_dict(), "order": order.get_state(), "scramble": scramble.get_state(),
            "best": best_state, "best_epoch": best_epoch, "best_auc": best_auc, "stale": stale,
            "history": [asdict(h) for h in history],
        })
        on_epoch(log)
    return TrainResult(best_state, best_epoch, best_auc, history, stopped)
