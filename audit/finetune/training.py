"""The fine-tuning loop: Adam, model selection and early stopping on the selection images'
AUROC, collapse signs after every epoch, a checkpoint each epoch.

The model trains in train mode, as the reference code trains: BatchNorm normalises each
forward pass with its own batch statistics and updates its running statistics, dropout is
active (``normalisation`` explains why actdiff needs this, and inserts BatchNorm where an
exporter folded it away). Evaluation runs in eval mode. Each epoch visits the training set in
a seeded random order (``data.Split``). Given the seed, a run is deterministic, and a run
resumed from its checkpoint continues exactly as if it had not stopped. A non-finite loss
ends the run at that epoch (a collapse sign, see ``collapse``).
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from scipy import special
from torch import nn

from audit.device import precision_context
from audit.errors import AuditError, AuditWarning, first_line
from audit.finetune.collapse import epoch_signs
from audit.finetune.data import Split
from audit.finetune.layers import FEATURES, LayerTaps
from audit.finetune.losses import Loss, Step
from audit.finetune.masking import scrambled_pixels
from audit.finetune.normalisation import inner
from audit.metrics.performance import auroc
from audit.models.spec import InputSpec


@dataclass(frozen=True)
class TrainConfig:
    """Defaults chosen on biased models trained and exported outside the sample models
    (README, "Fine-tuning"): Adam lr 3e-3 and λ_act 1 bring every one of them to validation
    AUROC ≥ 0.9 within 30 epochs."""

    loss: str
    epochs: int = 30
    lr: float = 3e-3
    lambda_act: float = 1.0
    lambda_grad: float = 10.0
    layers: tuple[str, ...] = (FEATURES,)
    batch_size: int = 32
    seed: int = 0
    patience: int | None = 10  # epochs without a better selection AUROC before stopping
    mode: str = "regions"  # which masks define the scrambled pixels: "regions" or "masks"

    def fingerprint(self) -> str:
        """Everything that changes the trajectory except ``epochs`` (so a longer run resumes)."""
        return repr({k: v for k, v in asdict(self).items() if k != "epochs"})


@dataclass
class EpochLog:
    epoch: int
    losses: dict[str, float]  # mean of each loss term over the epoch's batches
    valid_auc: float | None  # on the selection images
    valid_accuracy: float | None
    seconds: float
    signs: list[str] = field(default_factory=list)  # collapse signs (``collapse.epoch_signs``)


@dataclass
class TrainResult:
    state: dict[str, torch.Tensor]  # the selected (best selection AUROC) weights
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

    def on(self, device: torch.device, batch_size: int, order: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
        """``batches`` with every tensor on ``device``."""
        for tensors in self.batches(batch_size, order):
            yield tuple(t.to(device) for t in tensors)


@dataclass
class Evaluation:
    """Outputs of a model on a split: per image, and the accuracy and AUROC of the softmax."""

    paths: list[str]
    labels: np.ndarray
    logits: np.ndarray
    features: np.ndarray | None  # the classifier's input features, when the model has a final Linear
    probabilities: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.probabilities = special.softmax(self.logits, axis=1)

    @property
    def auc(self) -> float | None:
        return auroc(self.labels, self.probabilities)[0]

    @property
    def accuracy(self) -> float | None:
        return float(np.mean(self.probabilities.argmax(axis=1) == self.labels)) if len(self.labels) else None


def feature_taps(model: nn.Module) -> LayerTaps | None:
    """Taps on the classifier's input features, or None when the model has no final Linear."""
    try:
        return LayerTaps(inner(model), [FEATURES])
    except AuditError:
        return None


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, spec: InputSpec, batch_size: int, taps: LayerTaps | None = None) -> Evaluation:
    """Outputs of ``model`` (eval mode, on its device) on the labelled images of ``split``."""
    model.eval()
    device = next(model.parameters()).device
    paths, labels, logits_all, features = [], [], [], []
    for batch in split.batches(batch_size):
        x = spec.to_tensor(batch.images).to(device)
        if taps is None:
            logits = model(x)
        else:
            with taps.recording():
                logits = model(x)
            features.append(taps.taken()[0].flatten(1).double().cpu().numpy())
        paths += batch.paths
        labels.append(batch.labels)
        logits_all.append(logits.double().cpu().numpy())
    known = np.concatenate(labels) >= 0
    features_all = np.concatenate(features)[known] if features else None
    return Evaluation([p for p, k in zip(paths, known) if k], np.concatenate(labels)[known].astype(np.int64),
                      np.concatenate(logits_all)[known], features_all)


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
    precision: str = "fp32",
) -> TrainResult:
    """Fine-tune ``model`` in place with ``loss`` and return the epoch (1…) with the best
    AUROC on ``valid`` (the selection images); with ``patience``, stop after that many epochs
    without a better one.

    ``checkpoint`` is written after every epoch (``torch.save`` of state dicts, atomic) and,
    if it exists with the same configuration, training resumes from it; one that cannot be read or
    does not fit is ignored with an ``AuditWarning`` (``_readable_checkpoint``).

    Trains on the model's device; the loss's forward passes in ``precision`` (``audit.device``;
    fp16 with a gradient scaler).
    """
    device = next(model.parameters()).device
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    order = torch.Generator().manual_seed(config.seed)
    scramble = torch.Generator().manual_seed(config.seed + 1)
    taps = LayerTaps(inner(model), list(config.layers))
    features = feature_taps(model)
    best_state, best_epoch, best_auc, stale = copy.deepcopy(model.state_dict()), 0, None, 0
    history: list[EpochLog] = []
    first = 1
    saved = _readable_checkpoint(checkpoint, config)
    if saved is not None:
        before = copy.deepcopy(model.state_dict()), copy.deepcopy(optimiser.state_dict())
        try:
            history = [EpochLog(**log) for log in saved["history"]]
            best_state, best_epoch, best_auc, stale = saved["best"], int(saved["best_epoch"]), saved["best_auc"], int(saved["stale"])
            first = int(saved["epoch"]) + 1
            model.load_state_dict(saved["model"])
            optimiser.load_state_dict(saved["optimiser"])
            order.set_state(saved["order"])
            scramble.set_state(saved["scramble"])
        except Exception as exc:  # right keys, wrong contents: start fresh, as without a checkpoint
            _ignored(checkpoint, f"does not fit this model ({type(exc).__name__}: {first_line(exc)})")
            model.load_state_dict(before[0])
            optimiser.load_state_dict(before[1])
            order.manual_seed(config.seed)
            scramble.manual_seed(config.seed + 1)
            best_state, best_epoch, best_auc, stale = copy.deepcopy(model.state_dict()), 0, None, 0
            history, first = [], 1
    stopped = _finished(history, stale, config)
    for epoch in range(first, config.epochs + 1):
        if stopped:
            break
        began = time.perf_counter()
        sums: dict[str, float] = {}
        batches = 0
        finite = True
        model.train()
        for x, labels, scrambled, has_mask in data.on(device, config.batch_size, order):
            step = Step(model, x, labels, scrambled, has_mask, taps, config.lambda_act, config.lambda_grad, scramble)
            optimiser.zero_grad(set_to_none=True)
            with precision_context(device, precision):
                terms = loss(step)
            values = {k: float(v.detach()) for k, v in terms.items()}
            if not math.isfinite(values["total"]):
                finite = False
                break
            scaler.scale(terms["total"]).backward()
            scaler.step(optimiser)
            scaler.update()
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            batches += 1
            on_batch(values)
        scores = evaluate(model, valid, data.spec, config.batch_size, features)
        means = {k: v / max(batches, 1) for k, v in sums.items()}
        signs = epoch_signs(means.get("clf"), scores.logits, scores.features) if finite else ["loss not finite"]
        log = EpochLog(epoch, means, scores.auc, scores.accuracy, time.perf_counter() - began, signs)
        history.append(log)
        if best_epoch == 0 or (log.valid_auc is not None and (best_auc is None or log.valid_auc > best_auc)):
            best_state, best_epoch, best_auc, stale = copy.deepcopy(model.state_dict()), epoch, log.valid_auc, 0
        else:
            stale += 1
        stopped = _finished(history, stale, config)
        _save(checkpoint, {
            "fingerprint": config.fingerprint(), "epoch": epoch, "model": model.state_dict(),
            "optimiser": optimiser.state_dict(), "order": order.get_state(), "scramble": scramble.get_state(),
            "best": best_state, "best_epoch": best_epoch, "best_auc": best_auc, "stale": stale,
            "history": [asdict(h) for h in history],
        })
        on_epoch(log)
    return TrainResult(best_state, best_epoch, best_auc, history, stopped)


CHECKPOINT_KEYS = frozenset({"fingerprint", "epoch", "model", "optimiser", "order", "scramble", "best", "best_epoch",
                             "best_auc", "stale", "history"})


def _readable_checkpoint(checkpoint: Path, config: TrainConfig) -> dict | None:
    """The checkpoint to resume from, or None (train from the start): none there, one written
    for another configuration, or one that cannot be read as tensors and plain containers
    (``torch.load(weights_only=True)``; pickled objects are refused, never run) or lacks the
    keys ``train`` writes; the last two with an ``AuditWarning`` that names the file."""
    if not checkpoint.is_file():
        return None
    try:
        saved = torch.load(checkpoint, weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... on a bad file
        _ignored(checkpoint, f"cannot be read as a checkpoint of tensors ({type(exc).__name__}: {first_line(exc)})")
        return None
    if not isinstance(saved, dict) or not CHECKPOINT_KEYS <= saved.keys():
        missing = sorted(CHECKPOINT_KEYS - saved.keys()) if isinstance(saved, dict) else ["every key (not a dict)"]
        _ignored(checkpoint, f"lacks {', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}")
        return None
    return saved if saved["fingerprint"] == config.fingerprint() else None


def _ignored(checkpoint: Path, why: str) -> None:
    warnings.warn(f"{checkpoint.parent.name}/{checkpoint.name}: {why}; it is ignored and training starts from the beginning", AuditWarning, stacklevel=3)


def _finished(history: list[EpochLog], stale: int, config: TrainConfig) -> bool:
    """Early stop: patience exhausted, or a loss that is no longer finite."""
    if history and "loss not finite" in history[-1].signs:
        return True
    return config.patience is not None and stale >= config.patience
