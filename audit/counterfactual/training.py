"""Train the Latent Shift autoencoder (``autoencoder.py``) on an image dataset.

Loss: elastic, mean (x̂ − x)² + mean |x̂ − x| (Cohen et al. 2021, §4.1); Adam. A validation split
(``val_fraction`` of the images, chosen by ``seed``) drives early stopping: training stops after
``patience`` epochs without a lower validation loss, and ``out`` always holds the best epoch's
weights (with ``out.json``). After every epoch a checkpoint ``out.resume.pt`` (current weights,
optimiser, epoch, best loss) is written atomically; ``resume=True`` continues from it. Images are
streamed from disk each epoch in an order drawn from (seed, epoch), so a run is deterministic given
its seed and a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from audit.counterfactual.autoencoder import AutoencoderConfig, ResNetAutoencoder, elastic_loss
from audit.counterfactual.storage import atomic_write, load_state, save_autoencoder
from audit.data.dataset import Dataset, open_dataset
from audit.errors import AuditError


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    bottleneck: int = 8
    widths: tuple[int, ...] = (16, 32)
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0
    val_fraction: float = 0.1
    patience: int = 5
    size: tuple[int, int] | None = None  # (H, W); default: the first image's size
    channels: int | None = None  # default: the first image's channels

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.bottleneck < 1 or self.batch_size < 1 or self.patience < 1 or self.lr <= 0:
            raise AuditError("epochs, bottleneck, batch size and patience must be >= 1 and the learning rate > 0")
        if not 0 < self.val_fraction < 1:
            raise AuditError(f"validation fraction {self.val_fraction} must be in (0, 1)")


@dataclass
class TrainResult:
    epochs_run: int
    best_epoch: int
    best_val_loss: float
    history: list[dict[str, float]]
    stopped_early: bool


def checkpoint_path(out: Path) -> Path:
    """``ae.pt`` → ``ae.resume.pt``."""
    return out.with_name(out.stem + ".resume.pt")


def open_training_data(data: Path, config: TrainConfig) -> tuple[Dataset, Dataset, AutoencoderConfig]:
    """The train and validation datasets (a seeded split of ``data``) and the architecture."""
    probe = open_dataset(data, size=(1, 1), channels=1)
    if len(probe) < 2:
        raise AuditError(f"{data}: {len(probe)} image(s); the autoencoder needs at least 2 (train and validation)")
    height, width, channels = probe.first_shape()
    size = config.size or (height, width)
    channels = config.channels or channels
    full = open_dataset(data, size=size, channels=channels)
    order = np.random.default_rng([config.seed, 1]).permutation(len(full.entries))
    n_val = min(max(1, round(config.val_fraction * len(order))), len(order) - 1)
    val = dataclasses.replace(full, entries=[full.entries[i] for i in sorted(order[:n_val])])
    train = dataclasses.replace(full, entries=[full.entries[i] for i in sorted(order[n_val:])])
    architecture = AutoencoderConfig(channels, size[0], size[1], config.bottleneck, tuple(config.widths))
    return train, val, architecture


def _tensors(data: Dataset, batch_size: int, order: np.ndarray | None = None) -> Iterator[torch.Tensor]:
    if order is not None:
        data = dataclasses.replace(data, entries=[data.entries[i] for i in order])
    for batch in data.batches(batch_size):
        yield torch.from_numpy(np.ascontiguousarray(batch.images.transpose(0, 3, 1, 2)))


@torch.no_grad()
def validation_loss(model: ResNetAutoencoder, data: Dataset, batch_size: int) -> float:
    """Mean elastic loss per image over ``data``, in eval mode."""
    model.eval()
    total, count = 0.0, 0
    for x in _tensors(data, batch_size):
        total += float(elastic_loss(model(x), x)) * len(x)
        count += len(x)
    return total / count


def train_autoencoder(
    data: Path, out: Path, config: TrainConfig = TrainConfig(), *, resume: bool = False, progress: bool = True
) -> TrainResult:
    """Train on the images of ``data`` (folder or CSV manifest) and write the best model to ``out``."""
    out = Path(out)
    train, val, architecture = open_training_data(Path(data), config)
    torch.manual_seed(config.seed)
    model = ResNetAutoencoder(architecture)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    start, history, best, best_epoch, bad = 0, [], float("inf"), 0, 0
    checkpoint = checkpoint_path(out)
    if resume:
        if not checkpoint.is_file():
            raise AuditError(f"{checkpoint}: no checkpoint to resume from; run without --resume")
        state = load_state(checkpoint)
        if state["architecture"] != architecture.to_json() | {"widths": list(architecture.widths)}:
            raise AuditError(f"{checkpoint}: was trained with another architecture or data size; use the same options")
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        start, best, best_epoch, bad = state["epoch"], state["best"], state["best_epoch"], state["bad"]
        history = [dict(zip(("epoch", "train_loss", "val_loss"), row)) for row in state["history"]]
    elif out.exists() or checkpoint.exists():
        raise AuditError(f"{out}: already exists; choose another --out, or continue training with --resume")
    record = {"data": str(data), "config": {**dataclasses.asdict(config), "widths": list(config.widths)}}
    columns = (TextColumn("autoencoder"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"), TimeRemainingColumn())
    batches_per_epoch = -(-len(train) // config.batch_size)
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("train", total=(config.epochs - start) * batches_per_epoch, loss="")
        epoch = start
        while epoch < config.epochs and bad < config.patience:
            model.train()
            order = np.random.default_rng([config.seed, epoch]).permutation(len(train))
            total, count = 0.0, 0
            for x in _tensors(train, config.batch_size, order):
                loss = elastic_loss(model(x), x)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total, count = total + loss.item() * len(x), count + len(x)
                bar.update(task, advance=1, loss=f"epoch {epoch + 1} loss {loss.item():.4f}")
            val_loss = validation_loss(model, val, config.batch_size)
            epoch += 1
            history.append({"epoch": epoch, "train_loss": total / count, "val_loss": val_loss})
            if val_loss < best:
                best, best_epoch, bad = val_loss, epoch, 0
                save_autoencoder(model, out, {**record, "epoch": epoch, "val_loss": val_loss})
            else:
                bad += 1
            bar.update(task, loss=f"epoch {epoch} val {val_loss:.4f} (best {best:.4f} at {best_epoch})")
            state = {
                "architecture": architecture.to_json() | {"widths": list(architecture.widths)},
                "model": model.state_dict(),
                "optimiser": optimiser.state_dict(),
                "epoch": epoch,
                "best": best,
                "best_epoch": best_epoch,
                "bad": bad,
                "history": [[h["epoch"], h["train_loss"], h["val_loss"]] for h in history],
            }
            buffer = io.BytesIO()
            torch.save(state, buffer)
            atomic_write(checkpoint, lambda f: f.write(buffer.getvalue()))
    return TrainResult(epochs_run=epoch, best_epoch=best_epoch, best_val_loss=best, history=history, stopped_early=bad >= config.patience)
