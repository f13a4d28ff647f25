"""``audit finetune``: the chosen loss against the ``none`` control, from the same start, for the
same epochs and seeds, and an honest verdict.

Viviano et al. (2019) ask whether steering attribution away from a distractor improves
generalisation or only the saliency maps, and find the two need not agree. So every run trains
the chosen loss and plain classification (``none``) from the same starting weights with the
same seeds, data order and selection rule, and for exactly as many epochs as the loss trained
(early stopping applies to the loss; the control then runs that many epochs), and compares, on
the validation set:
accuracy and AUROC, and the audit metrics of ``audit run`` with the gradient method
(enrichment of saliency on the artefact, IoU of the saliency peak with the regions).
Model selection uses the same validation split for both arms, so their numbers are optimistic
to the same degree.

Outputs in ``out``: ``results.json``, ``report.pdf``, the fine-tuned model (first seed) as
``model.<onnx|pt|pt2>``, ``checkpoints/`` (resumable), ``audit/<arm>-seed<k>/`` (``audit run``
outputs on the validation set).
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

import audit
from audit.data.dataset import Dataset
from audit.errors import AuditError
from audit.finetune.export import SUFFIXES, check_writable, write_model
from audit.finetune.layers import LayerTaps
from audit.finetune.losses import losses
from audit.finetune.masking import select_masks
from audit.finetune.data import Split
from audit.finetune.training import EpochLog, TrainConfig, TrainingData, evaluate, train
from audit.finetune.verdict import verdict
from audit.models.classifier import Classifier, from_module
from audit.models.loader import ModelOptions
from audit.pipeline import RunConfig, run_audit
from audit.report.results_file import write_results

SCHEMA = "audit.finetune/1"
CONTROL = "none"


@dataclass(frozen=True)
class ExperimentConfig:
    train: TrainConfig
    seeds: int = 1
    mask_fraction: float = 1.0
    examples: int = 4  # validation images whose saliency maps go into the report
    command: str = ""


@dataclass
class Progress:
    """Callbacks for a progress display: a run starts, a batch ends, an epoch ends."""

    on_run: Callable[[str, int, int], None] = lambda arm, seed, epochs: None
    on_batch: Callable[[dict[str, float]], None] = lambda terms: None
    on_epoch: Callable[[EpochLog], None] = lambda log: None


def check_valid_classes(valid: Dataset) -> None:
    labels = sorted({label for _, label in valid.entries if label >= 0})
    if len(labels) < 2:
        found = f"only class {valid.classes[labels[0]]!r}" if labels else "no labelled images"
        raise AuditError(f"{valid.base}: the validation set has {found}; AUROC and model selection need at least two classes")


def masked_paths(train: Split, mode: str, batch_size: int) -> list[str]:
    """Training images that have a mask of the kind ``mode`` uses; AuditError when none does."""
    found = train.paths_with_masks(mode, batch_size)
    train_set = train.dataset
    if not found:
        flag, folder = ("--regions", train_set.regions) if mode == "regions" else ("--masks", train_set.masks)
        raise AuditError(f"{folder}: none of the {len(train_set)} training images has a mask ({flag}); masks mirror "
                         f"the image tree (train/cls/a.png ↔ {flag} folder/cls/a.png)")
    return found


def _audit_metrics(classifier: Classifier, model: nn.Module, valid: Dataset, batch_size: int, out: Path) -> dict[str, Any]:
    wrapped = from_module(model, classifier.spec, classifier.class_names, path=classifier.path, format=classifier.format)
    results = run_audit(wrapped, valid, RunConfig(methods=["gradient"], batch_size=batch_size, randomization_images=0), out)
    gradient = results["methods"]["gradient"]
    return {"enrichment": gradient["artefact"]["enrichment"]["overall"], "iou": gradient["region"]["iou"]["mean"]}


def _scores(classifier: Classifier, model: nn.Module, valid: Split, batch_size: int, out: Path) -> dict[str, Any]:
    performance = evaluate(model, valid, classifier.spec, batch_size)
    return {"auc": performance["auc"], "accuracy": performance["accuracy"],
            **_audit_metrics(classifier, model, valid.dataset, batch_size, out)}


def _summary(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Means and standard deviations over seeds of each metric, and the per-seed rows."""
    summary: dict[str, Any] = {}
    for key in ("auc", "accuracy", "enrichment", "iou"):
        values = [row[key] for row in per_seed if row.get(key) is not None]
        summary[key] = float(np.mean(values)) if values else None
        summary[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else (0.0 if values else None)
    return {**summary, "per_seed": per_seed}


def saliency_examples(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """|∂y_pred/∂x| summed over channels for a few images (the report's example maps)."""
    x = x.detach().clone().requires_grad_(True)
    logits = model(x)
    chosen = logits.gather(1, logits.argmax(dim=1, keepdim=True)).sum()
    (gradient,) = torch.autograd.grad(chosen, x)
    return gradient.abs().sum(dim=1).numpy()


def run_experiment(
    classifier: Classifier,
    options: ModelOptions,
    train_set: Dataset,
    valid: Dataset,
    config: ExperimentConfig,
    out: Path,
    progress: Progress = Progress(),
) -> dict[str, Any]:
    """Validate the inputs, train the loss and the control for every seed, evaluate, write
    ``out/results.json``, ``out/report.pdf`` and the fine-tuned model; return the results."""
    tc = config.train
    losses.get(tc.loss)  # an unknown loss fails here
    if config.seeds < 1 or tc.epochs < 1:
        raise AuditError(f"--seeds {config.seeds} and --epochs {tc.epochs} must be at least 1")
    check_valid_classes(valid)
    start = classifier.differentiable
    LayerTaps(start, list(tc.layers))  # an unknown --layers name fails here
    train_split = Split.read(train_set, tc.batch_size)
    with_masks = masked_paths(train_split, tc.mode, tc.batch_size)
    check_writable(classifier, options)
    valid_split = Split.read(valid, tc.batch_size)
    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoints").mkdir(exist_ok=True)
    start_state = copy.deepcopy(start.state_dict())
    seeds = [tc.seed + k for k in range(config.seeds)]
    before = _scores(classifier, start, valid_split, tc.batch_size, out / "audit" / "before")
    example_batch = next(iter(valid.batches(config.examples)))
    example_x = classifier.spec.to_tensor(example_batch.images)
    arms = [tc.loss] if tc.loss == CONTROL else [tc.loss, CONTROL]
    rows: dict[str, list[dict[str, Any]]] = {arm: [] for arm in arms}
    histories: dict[str, dict[int, list[dict]]] = {arm: {} for arm in arms}
    maps = {"before": saliency_examples(start, example_x)}
    for seed in seeds:
        selected = select_masks(with_masks, config.mask_fraction, seed)
        data = TrainingData(train_split, classifier.spec, tc.mode, selected)
        trained = tc.epochs
        for arm in arms:
            model = copy.deepcopy(start)
            model.load_state_dict(start_state)
            run = replace(tc, loss=arm, seed=seed)
            if arm != tc.loss:  # the control trains exactly as many epochs as the loss did
                run = replace(run, epochs=trained, patience=None)
            progress.on_run(arm, seed, tc.epochs)
            result = train(model, losses.get(arm), data, valid_split, run, out / "checkpoints" / f"{arm}-seed{seed}.pt",
                           on_batch=progress.on_batch, on_epoch=progress.on_epoch)
            model.load_state_dict(result.state)
            scores = _scores(classifier, model, valid_split, tc.batch_size, out / "audit" / f"{arm}-seed{seed}")
            rows[arm].append({"seed": seed, **scores, "best_epoch": result.best_epoch, "epochs": len(result.history),
                              "stopped_early": result.stopped_early,
                              "seconds": round(sum(h.seconds for h in result.history), 2),
                              "masks_used": len(selected) if selected is not None else len(with_masks)})
            histories[arm][seed] = [asdict(h) for h in result.history]
            trained = len(result.history)
            if seed == seeds[0]:
                maps[arm] = saliency_examples(model, example_x)
                if arm == tc.loss:
                    model_path = write_model(classifier, model, out / f"model{SUFFIXES[classifier.format]}")
    before_block = _summary([{"seed": s, **before} for s in seeds])
    control_block = _summary(rows[CONTROL])
    after_block = _summary(rows[tc.loss])
    results = {
        "schema": SCHEMA,
        "tool": {"name": "audit", "version": audit.__version__},
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": config.command,
        "model": {"path": str(classifier.path), "format": classifier.format, "sha256": classifier.sha256,
                  "fine_tuned": str(model_path), "fine_tuned_seed": seeds[0]},
        "config": {**asdict(tc), "seeds": seeds, "mask_fraction": config.mask_fraction},
        "data": {"train": str(train_set.base), "train_images": len(train_set), "train_with_mask": len(with_masks),
                 "valid": str(valid.base), "valid_images": len(valid)},
        "before": {"valid": before_block},
        "control": {"loss": CONTROL, "valid": control_block, "history": histories[CONTROL]},
        "after": {"loss": tc.loss, "valid": after_block, "history": histories[tc.loss]},
    }
    results["verdict"] = verdict(tc.loss, before_block, control_block, after_block)
    write_results(results, out / "results.json")
    from audit.finetune.report import write_report

    write_report(results, example_batch, maps, out / "report.pdf")
    return results
