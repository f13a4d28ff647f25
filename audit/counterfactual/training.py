"""Train the Latent Shift autoencoder (``autoencoder.py``) on an image dataset.

Loss: elastic, mean (x̂ − x)² + mean |x̂ − x| (Cohen et al. 2021, §4.1); Adam. A validation split
(``val_fraction`` of the images, chosen by ``seed``) drives early stopping: training stops after
``patience`` epochs without a lower validation loss, and ``out`` always holds the best epoch's
weights (with ``out.json``). After every epoch a checkpoint ``out.resume.pt`` (current weights,
optimiser, epoch, best loss) is written atomically; ``resume=True`` continues from it. Images are
streamed from disk each epoch in an order drawn from (seed, epoch), so a run is deterministic given
its seed and a resumed run equals an uninterrupted one.

Bounds: ``epochs`` and ``patience`` 1..10,000, ``lr`` finite in (0, 1], ``bottleneck`` and
``channels`` 1..1024, ``size`` within the pixel limit of every reader, and the last encoder stage
must hold more than one value per image (⌈H/4⌉ · ⌈W/4⌉ ≥ 2 with the two default stages: batch
normalisation cannot train on one value). ``out`` must not end in ``.json`` (its config's name).
A loss that is NaN or infinite ends training with an error (lower ``lr``).
"""

from __future__ import annotations

import dataclasses
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from audit.counterfactual.autoencoder import MAX_WIDTH, AutoencoderConfig, ResNetAutoencoder, elastic_loss
from audit.counterfactual.storage import atomic_write, config_path, load_state, save_autoencoder
from audit.data.dataset import Dataset, open_dataset
from audit.device import precision_context
from audit.errors import AuditError, first_line
from audit.limits import MAX_IMAGE_PIXELS, too_many_pixels

MAX_EPOCHS = 10_000


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
        counts = {"--epochs": (self.epochs, MAX_EPOCHS), "--patience": (self.patience, MAX_EPOCHS), "--bottleneck": (self.bottleneck, MAX_WIDTH)}
        counts["--channels"] = (self.channels if self.channels is not None else 1, MAX_WIDTH)
        for flag, (value, most) in counts.items():
            if not 1 <= value <= most:
                raise AuditError(f"{flag} {value}: must be from 1 to {most}")
        if self.batch_size < 1:
            raise AuditError(f"--batch-size {self.batch_size}: must be >= 1")
        if not (math.isfinite(self.lr) and 0 < self.lr <= 1):
            raise AuditError(f"--lr {self.lr}: must be a finite number in (0, 1]")
        if not 0 < self.val_fraction < 1:
            raise AuditError(f"validation fraction {self.val_fraction} must be in (0, 1)")
        if self.size is not None and (min(self.size) < 1 or too_many_pixels(*self.size)):
            raise AuditError(f"--size {self.size[0]} {self.size[1]}: must be >= 1 and at most {MAX_IMAGE_PIXELS:,} pixels (the limit of every image reader)")


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
    source = "--size" if config.size else f"{data} (its first image's size)"
    if architecture.problem():
        raise AuditError(f"{source} {size[0]}x{size[1]}: {architecture.problem()}")
    if architecture.deepest_values < 2:
        raise AuditError(
            f"{source} {size[0]}x{size[1]}: the encoder halves it {len(config.widths)} times to 1x1, where batch "
            f"normalisation cannot train; give --size with a side above {2 ** len(config.widths)}"
        )
    return train, val, architecture


def _tensors(data: Dataset, batch_size: int, order: np.ndarray | None = None,
             device: torch.device = torch.device("cpu")) -> Iterator[torch.Tensor]:
    if order is not None:
        data = dataclasses.replace(data, entries=[data.entries[i] for i in order])
    for batch in data.batches(batch_size):
        yield torch.from_numpy(np.ascontiguousarray(batch.images.transpose(0, 3, 1, 2))).to(device)


@torch.no_grad()
def validation_loss(model: ResNetAutoencoder, data: Dataset, batch_size: int, precision: str = "fp32") -> float:
    """Mean elastic loss per image over ``data``, in eval mode, on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for x in _tensors(data, batch_size, device=device):
        with precision_context(device, precision):
            reconstruction = model(x)
        total += float(elastic_loss(reconstruction.float(), x)) * len(x)
        count += len(x)
    return total / count


def train_autoencoder(
    data: Path, out: Path, config: TrainConfig = TrainConfig(), *, resume: bool = False, progress: bool = True,
    device: torch.device = torch.device("cpu"), precision: str = "fp32",
) -> TrainResult:
    """Train on the images of ``data`` (folder or CSV manifest) and write the best model to ``out``.
    On ``device`` (the weights are initialised on the CPU under the seed, then moved, so every
    device starts from the same ones), the forward pass in ``precision`` (``audit.device``;
    fp16 with a gradient scaler)."""
    out = Path(out)
    if config_path(out) == out:
        raise AuditError(f"--out {out}: its config would be written to the same file; give a weights name such as {out.with_suffix('.pt')}")
    train, val, architecture = open_training_data(Path(data), config)
    torch.manual_seed(config.seed)
    model = ResNetAutoencoder(architecture).to(device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    start, history, best, best_epoch, bad = 0, [], float("inf"), 0, 0
    checkpoint = checkpoint_path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        has_checkpoint, taken = checkpoint.is_file(), out.exists() or checkpoint.exists()
    except OSError as exc:  # below a file, a name too long, a read-only or virtual file system
        raise AuditError(f"--out {out}: cannot be written ({exc.strerror or first_line(exc)}); choose a writable path") from exc
    if resume:
        if not has_checkpoint:
            raise AuditError(f"{checkpoint}: no checkpoint to resume from; run without --resume")
        start, best, best_epoch, bad, history = _resume(checkpoint, load_state(checkpoint), architecture, model, optimiser)
    elif taken:
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
            for x in _tensors(train, config.batch_size, order, device):
                with precision_context(device, precision):
                    reconstruction = model(x)
                loss = elastic_loss(reconstruction.float(), x)
                optimiser.zero_grad()
                scaler.scale(loss).backward()
                scaler.step(optimiser)
                scaler.update()
                total, count = total + loss.item() * len(x), count + len(x)
                bar.update(task, advance=1, loss=f"epoch {epoch + 1} loss {loss.item():.4f}")
            val_loss = validation_loss(model, val, config.batch_size, precision)
            epoch += 1
            if not (math.isfinite(val_loss) and math.isfinite(total)):
                raise AuditError(f"{out}: training diverged at epoch {epoch} (loss {total / count} train, {val_loss} validation); lower --lr (now {config.lr})")
            history.append({"epoch": epoch, "train_loss": total / count, "val_loss": val_loss})
            if val_loss < best:
                best, best_epoch, bad = val_loss, epoch, 0
                _written(out, lambda: save_autoencoder(model, out, {**record, "epoch": epoch, "val_loss": val_loss}))
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
            _written(checkpoint, lambda: atomic_write(checkpoint, lambda f: f.write(buffer.getvalue())))
    return TrainResult(epochs_run=epoch, best_epoch=best_epoch, best_val_loss=best, history=history, stopped_early=bad >= config.patience)


def _written(path: Path, write: Callable[[], None]) -> None:
    """Run ``write``; an OSError (full disk, read-only folder) becomes a one-line AuditError."""
    try:
        write()
    except OSError as exc:
        raise AuditError(f"{path}: cannot write ({exc.strerror or first_line(exc)}); free space or choose another --out") from exc


RESUME_KEYS = {"architecture": dict, "model": dict, "optimiser": dict, "epoch": int, "best": float, "best_epoch": int, "bad": int, "history": list}


def _resume(
    checkpoint: Path, state: object, architecture: AutoencoderConfig, model: ResNetAutoencoder, optimiser: torch.optim.Optimizer
) -> tuple[int, float, int, int, list[dict[str, float]]]:
    """Load a checkpoint written by ``train_autoencoder`` into ``model`` and ``optimiser``; return
    (epoch, best loss, best epoch, epochs without improvement, history). AuditError when it is not one."""
    mismatch = f"{checkpoint}: does not match this training (%s); delete it or run without --resume"
    if not isinstance(state, dict) or any(not isinstance(state.get(k), t) for k, t in RESUME_KEYS.items()):
        raise AuditError(mismatch % f"expected the keys {', '.join(RESUME_KEYS)}")
    if state["architecture"] != architecture.to_json() | {"widths": list(architecture.widths)}:
        raise AuditError(f"{checkpoint}: was trained with another architecture or data size; use the same options")
    try:
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        history = [dict(zip(("epoch", "train_loss", "val_loss"), row, strict=True)) for row in state["history"]]
    except Exception as exc:  # missing or misshapen tensors, rows of another length
        raise AuditError(mismatch % first_line(exc)) from exc
    return state["epoch"], state["best"], state["best_epoch"], state["bad"], history
