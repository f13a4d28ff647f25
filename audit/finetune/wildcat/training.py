"""Training a ``WildcatNet`` as Aggarwal et al. (2020, Appendix A) train theirs: binary
cross-entropy, Adam, batch 64, early stopping with patience 10 on the validation loss.

Loss: one-vs-rest binary cross-entropy of the scores s (N, K) against the one-hot label
vectors y (labels are class indices, as everywhere in ``audit``; for ``--multilabel`` models too),

    L = −(1/(N·K)) Σ_n Σ_k [ y_nk log σ(s_nk) + (1 − y_nk) log(1 − σ(s_nk)) ].

Images without a label (−1) are left out. The epoch with the lowest validation loss is kept;
training stops after ``patience`` epochs without a lower one, or after ``epochs``.

Normalisation as fine-tuning does it (``audit.finetune.normalisation``): the whole network
trains in train mode (BatchNorm on batch statistics), with BatchNorm inserted, initialised to
the identity from the training data, after every convolution that no normalisation reads
(folded by an exporter), and folded back on export. With ``freeze_features`` only the head
trains: the trunk runs in eval mode without gradients (nothing inserted).

Deterministic given ``seed``: the training order is a seeded permutation (``finetune.data.Split``)
and dropout draws from torch's generator seeded with it (the caller's generator state is
restored afterwards).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from audit.errors import AuditError
from audit.finetune.data import Split
from audit.finetune.normalisation import trainable
from audit.finetune.wildcat.network import WildcatNet
from audit.metrics.performance import auroc
from audit.models.classifier import Classifier
from audit.models.spec import InputSpec


@dataclass(frozen=True)
class WildcatConfig:
    """Batch 64 and patience 10 are the paper's (Appendix A); lr and the epoch limit are ours:
    lr 3e-3 gave the lowest validation loss on both models of ``head.DEFAULTS``'s measurement
    (0.031 / 0.017 in 40 epochs against 0.069 / 0.073 at 1e-3 and 0.137 / 0.347 at 3e-4)."""

    epochs: int = 100
    lr: float = 3e-3
    batch_size: int = 64
    patience: int | None = 10  # epochs without a lower validation loss before stopping
    seed: int = 0
    freeze_features: bool = False


@dataclass
class EpochLog:
    epoch: int
    train_loss: float  # mean BCE over the epoch's batches
    valid_loss: float  # mean BCE over the labelled validation images (eval mode)
    valid_auc: float | None  # AUROC of the softmax (sigmoid for --multilabel) of the scores
    seconds: float


@dataclass
class TrainResult:
    state: dict[str, torch.Tensor]  # the selected (lowest validation loss) weights
    best_epoch: int
    best_loss: float
    history: list[EpochLog] = field(default_factory=list)
    stopped_early: bool = False


def check_config(config: WildcatConfig) -> None:
    """One-line errors for options that cannot work, before anything is read or trained."""
    if not (math.isfinite(config.lr) and config.lr > 0):
        raise AuditError(f"--lr {config.lr}: give a positive, finite learning rate")
    if config.epochs < 1 or config.batch_size < 1:
        raise AuditError(f"--epochs {config.epochs} and --batch-size {config.batch_size} must be at least 1")
    if config.patience is not None and config.patience < 1:
        raise AuditError(f"--patience {config.patience}: give at least 1 epoch")


def prepare(net: WildcatNet, classifier: Classifier, train: Split, config: WildcatConfig) -> WildcatNet:
    """``net`` ready to train: unless ``freeze_features``, its trunk in ``normalisation.trainable``
    form (BatchNorm inserted where folded, data-initialised from ``train``)."""
    if config.freeze_features:
        return net
    first = classifier.to_input(next(iter(train.batches(config.batch_size))).images)
    net.trunk = trainable(net.trunk, first, (classifier.to_input(b.images) for b in train.batches(config.batch_size)),
                          str(classifier.path))
    return net


def bce(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean one-vs-rest binary cross-entropy of (N, K) scores against (N,) class indices."""
    return F.binary_cross_entropy_with_logits(scores, F.one_hot(labels, scores.shape[1]).to(scores.dtype))


@torch.no_grad()
def validate(net: WildcatNet, split: Split, spec: InputSpec, batch_size: int, multilabel: bool) -> tuple[float, float | None]:
    """(mean BCE, AUROC) of ``net`` in eval mode on the labelled images of ``split``."""
    net.eval()
    device = next(net.parameters()).device
    total, count, labels_all, probabilities = 0.0, 0, [], []
    for batch in split.batches(batch_size):
        known = batch.labels >= 0
        if not known.any():
            continue
        x = spec.to_tensor(batch.images[known]).to(device)
        labels = torch.from_numpy(batch.labels[known]).to(device)
        scores, _ = net(x)
        total += float(bce(scores.float(), labels)) * len(labels)
        count += len(labels)
        labels_all.append(batch.labels[known])
        probabilities.append((torch.sigmoid(scores) if multilabel else torch.softmax(scores, 1)).double().cpu().numpy())
    if not count:
        raise AuditError(f"{split.dataset.base}: no labelled validation images; the validation loss needs labels")
    return total / count, auroc(np.concatenate(labels_all), np.concatenate(probabilities))[0]


def train_wildcat(net: WildcatNet, train: Split, valid: Split, spec: InputSpec, config: WildcatConfig, *,
                  multilabel: bool = False, on_epoch: Callable[[EpochLog], None] = lambda log: None) -> TrainResult:
    """Train ``net`` (on its device, prepared by ``prepare``) and leave it with the weights of
    the epoch with the lowest validation loss (module docstring)."""
    check_config(config)
    device = next(net.parameters()).device
    frozen = config.freeze_features
    for p in net.trunk.parameters():
        p.requires_grad_(not frozen)
    optimiser = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=config.lr)
    order = torch.Generator().manual_seed(config.seed)
    best_state, best_epoch, best_loss, stale, stopped = copy.deepcopy(net.state_dict()), 0, math.inf, 0, False
    history: list[EpochLog] = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        for epoch in range(1, config.epochs + 1):
            began = time.perf_counter()
            net.train()
            if frozen:
                net.trunk.eval()
            total, batches = 0.0, 0
            for batch in train.batches(config.batch_size, order):
                known = batch.labels >= 0
                if not known.any():
                    continue
                x = spec.to_tensor(batch.images[known]).to(device)
                labels = torch.from_numpy(batch.labels[known]).to(device)
                with torch.set_grad_enabled(not frozen):
                    features = net.features(x)
                scores, _ = net.head(features)
                loss = bce(scores, labels)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                total += float(loss.detach())
                batches += 1
            valid_loss, valid_auc = validate(net, valid, spec, config.batch_size, multilabel)
            log = EpochLog(epoch, total / max(batches, 1), valid_loss, valid_auc, time.perf_counter() - began)
            history.append(log)
            if valid_loss < best_loss:
                best_state, best_epoch, best_loss, stale = copy.deepcopy(net.state_dict()), epoch, valid_loss, 0
            else:
                stale += 1
            on_epoch(log)
            if not math.isfinite(log.train_loss) or (config.patience is not None and stale >= config.patience):
                stopped = epoch < config.epochs
                break
    net.load_state_dict(best_state)
    net.eval()
    return TrainResult(best_state, best_epoch, best_loss, history, stopped)
