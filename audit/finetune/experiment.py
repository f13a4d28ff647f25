"""``audit finetune``: every chosen loss against one shared ``none`` control, from the same
start, over the same seeds, judged on images that did not choose the model.

Viviano et al. (2019) ask whether steering attribution away from a distractor improves
generalisation or only the saliency maps, and find the two need not agree (their Table 1).
So every run trains each loss and plain classification (``none``) from the same starting
weights with the same seeds, data order and selection rule; the control trains as many epochs
as the longest of the losses did for that seed (no early stopping), so a gain is not just
extra training.

Two sets of held-out images, never the same ones:

- selection (``--valid``): chooses the epoch (best AUROC) and stops early;
- report (``--test``; without it, the other half of ``--valid``, ``data.halves``): every number
  of the verdict and of the table — AUROC, accuracy, and the audit metrics of ``audit run``
  with the gradient method (enrichment of saliency on the artefact, IoU of the saliency peak
  with the regions).

Models train in train mode, with BatchNorm put back where it was folded away
(``normalisation``). Outputs in ``out``: ``results.json``, ``report.pdf``, each loss's
fine-tuned model (first seed) as ``model-<loss>.<onnx|pt|pt2>``, ``checkpoints/`` (resumable),
``audit/<arm>-seed<k>/`` (``audit run`` outputs on the report images).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from audit.data.dataset import Dataset
from audit.device import describe
from audit.errors import AuditError
from audit.finetune.collapse import auc_at_chance, collapse_epoch
from audit.finetune.data import Split, halves
from audit.finetune.export import SUFFIXES, check_writable, write_model
from audit.finetune.layers import LayerTaps
from audit.finetune.losses import losses as registry
from audit.finetune.masking import select_masks
from audit.finetune.normalisation import exportable, inner, trainable
from audit.finetune.training import EpochLog, Evaluation, TrainConfig, TrainingData, evaluate, train
from audit.finetune.uncertainty import bootstrap, resampled_auroc
from audit.finetune.verdict import COLUMNS, Outcome, verdict
from audit.models.classifier import Classifier, from_module
from audit.models.loader import ModelOptions
from audit.pipeline import RunConfig, run_audit
from audit.report.results_file import header, write_results

SCHEMA = "audit.finetune/2"
CONTROL = "none"


@dataclass(frozen=True)
class ExperimentConfig:
    train: TrainConfig  # its ``loss`` is ignored: ``losses`` are trained
    losses: tuple[str, ...] = ("actdiff",)
    seeds: int = 1
    mask_fraction: float = 1.0
    examples: int = 4  # report images whose saliency maps go into the PDF
    command: str = ""
    precision: str = "fp32"  # forward and backward passes of the training (``audit.device``)


@dataclass
class Progress:
    """Callbacks for a progress display: a run starts, a batch ends, an epoch ends."""

    on_run: Callable[[str, int, int], None] = lambda arm, seed, epochs: None
    on_batch: Callable[[dict[str, float]], None] = lambda terms: None
    on_epoch: Callable[[EpochLog], None] = lambda log: None


def check_config(config: ExperimentConfig) -> None:
    """One-line errors for options that cannot work, before anything is read or trained."""
    tc = config.train
    for loss in config.losses:
        registry.get(loss)  # an unknown loss fails here
        if config.losses.count(loss) > 1:
            raise AuditError(f"--loss {loss} is given {config.losses.count(loss)} times; give each loss once "
                             f"(the {CONTROL!r} control is always trained)")
    for flag, value in (("--lr", tc.lr), ("--lambda-act", tc.lambda_act), ("--lambda-grad", tc.lambda_grad)):
        if not (math.isfinite(value) and value > 0):
            raise AuditError(f"{flag} {value}: give a positive number, finite (to switch a penalty off, choose another --loss)")
    if not tc.layers:
        raise AuditError("--layers is empty; give at least one layer name, e.g. --layers features")
    if not 0 < config.mask_fraction <= 1:
        raise AuditError(f"--mask-fraction {config.mask_fraction}: give a fraction in (0, 1]")
    if config.seeds < 1 or tc.epochs < 1:
        raise AuditError(f"--seeds {config.seeds} and --epochs {tc.epochs} must be at least 1")


def check_labelled(dataset: Dataset, flag: str) -> None:
    """A set that measures AUROC needs labels of at least two classes."""
    labels = sorted({label for _, label in dataset.entries if label >= 0})
    if len(labels) < 2:
        found = f"only class {dataset.classes[labels[0]]!r}" if labels else "no labelled images"
        raise AuditError(f"{dataset.base}: the {flag} set has {found}; AUROC needs labelled images of at least two "
                         f"classes (a folder per class, or a CSV manifest with labels)")


def masked_paths(train: Split, mode: str, batch_size: int) -> list[str]:
    """Training images that have a mask of the kind ``mode`` uses; AuditError when none does."""
    found = train.paths_with_masks(mode, batch_size)
    train_set = train.dataset
    if not found:
        flag, folder = ("--regions", train_set.regions) if mode == "regions" else ("--masks", train_set.masks)
        raise AuditError(f"{folder}: none of the {len(train_set)} training images has a mask ({flag}); masks mirror "
                         f"the image tree (train/cls/a.png ↔ {flag} folder/cls/a.png)")
    return found


@dataclass
class Measured:
    """One model measured on the report images: the JSON row and the per-image values."""

    row: dict[str, Any]
    evaluation: Evaluation
    per_image: pd.DataFrame = field(default_factory=pd.DataFrame)


def _audit(classifier: Classifier, model: nn.Module, report: Dataset, batch_size: int, out: Path) -> tuple[dict, pd.DataFrame]:
    """``audit run --method gradient`` on the report images: the summaries and the per-image table."""
    wrapped = from_module(model, classifier.spec, classifier.class_names, path=classifier.path, format=classifier.format)
    results = run_audit(wrapped, report, RunConfig(methods=["gradient"], batch_size=batch_size, randomization_images=0), out)
    gradient = results["methods"]["gradient"]
    table = pd.read_csv(out / "per_image.csv").set_index("path")
    summary = {"enrichment": gradient["artefact"]["enrichment"]["overall"], "iou": gradient["region"]["iou"]["mean"]}
    return summary, table[[c for c in COLUMNS.values() if c in table]]


def _measure(classifier: Classifier, final: nn.Module, splits: dict[str, Split], report: Dataset,
             batch_size: int, out: Path) -> Measured:
    """``final`` (the model as it is written: ``normalisation.exportable``) on every split, and
    ``audit run`` on the report images."""
    scores = {name: evaluate(final, split, classifier.spec, batch_size) for name, split in splits.items()}
    audited, per_image = _audit(classifier, final, report, batch_size, out)
    row = {name: {"auc": s.auc, "accuracy": s.accuracy} for name, s in scores.items()}
    row["test"].update(audited)
    # per image in the order of the evaluation (its labelled images), so that bootstraps pair them
    return Measured(row, scores["test"], per_image.reindex(scores["test"].paths))


def _auc_interval(evaluation: Evaluation, seed: int) -> list[float] | None:
    labels, probabilities = evaluation.labels, evaluation.probabilities
    if len(np.unique(labels)) < 2:
        return None
    interval = bootstrap(lambda rows: resampled_auroc(labels, probabilities, rows), labels, seed)
    return None if interval is None else list(interval)


def _collapse(history: list[EpochLog], selected: int, evaluation: Evaluation, seed: int) -> dict[str, Any]:
    """Collapse of a run (``collapse``): signs that persist to the last epoch, or that the
    selected model shows, including a report AUROC whose interval covers 0.5."""
    signs = [h.signs for h in history]
    interval = _auc_interval(evaluation, seed)
    at_chance = auc_at_chance(tuple(interval) if interval else None)
    end = len(history) if signs and signs[-1] else selected
    epoch = collapse_epoch(signs, end)
    found = list(signs[end - 1]) if epoch is not None else []
    if at_chance:
        found.append("AUC at chance")
        epoch = epoch if epoch is not None else selected
    return {"collapsed": bool(found), "epoch": epoch, "signs": found, "test_auc_ci95": interval}


def saliency_examples(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """|∂y_pred/∂x| summed over channels for a few images (the report's example maps)."""
    x = x.detach().clone().requires_grad_(True)
    logits = model(x)
    chosen = logits.gather(1, logits.argmax(dim=1, keepdim=True)).sum()
    (gradient,) = torch.autograd.grad(chosen, x)
    return gradient.abs().sum(dim=1).cpu().numpy()


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation over seeds of each number in the per-seed rows."""
    summary: dict[str, Any] = {}
    for split in ("train", "valid", "test"):
        block: dict[str, Any] = {}
        for key in ("auc", "accuracy", "enrichment", "iou"):
            values = [row[split][key] for row in rows if row[split].get(key) is not None]
            if key in rows[0][split]:
                block[key] = float(np.mean(values)) if values else None
                block[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
        summary[split] = block
    epochs = [row["best_epoch"] for row in rows if "best_epoch" in row]
    if epochs:
        summary["best_epoch"] = float(np.mean(epochs))
        summary["best_epoch_std"] = float(np.std(epochs, ddof=1)) if len(epochs) > 1 else None
    return summary


def _table(arms: list[str], results: dict[str, Any]) -> list[dict[str, Any]]:
    """Viviano et al.'s Table 1 for this model: per arm, train / valid / test AUROC, ΔIoU of the
    gradient map with the regions against the model before fine-tuning, best epoch, collapses."""
    before_iou = results["before"]["test"].get("iou")
    rows = []
    for arm in arms:
        block = results["arms"][arm]
        ious = [r["test"]["iou"] - before_iou for r in block["per_seed"]
                if r["test"].get("iou") is not None and before_iou is not None]
        rows.append({
            "loss": arm,
            **{f"{split}_auc": block[split]["auc"] for split in ("train", "valid", "test")},
            **{f"{split}_auc_std": block[split]["auc_std"] for split in ("train", "valid", "test")},
            "delta_iou": float(np.mean(ious)) if ious else None,
            "delta_iou_std": float(np.std(ious, ddof=1)) if len(ious) > 1 else None,
            "best_epoch": block["best_epoch"], "best_epoch_std": block["best_epoch_std"],
            "collapsed_seeds": [r["seed"] for r in block["per_seed"] if r["collapse"]["collapsed"]],
        })
    return rows


def run_experiment(
    classifier: Classifier,
    options: ModelOptions,
    train_set: Dataset,
    valid: Dataset,
    test: Dataset | None,
    config: ExperimentConfig,
    out: Path,
    progress: Progress = Progress(),
) -> dict[str, Any]:
    """Validate the inputs, train every loss and the control for every seed, measure, write
    ``out/results.json``, ``out/report.pdf`` and the fine-tuned models; return the results."""
    check_config(config)
    tc = config.train
    check_labelled(valid, "--valid")
    if test is not None:
        check_labelled(test, "--test")
    selection, report = (valid, test) if test is not None else halves(valid)
    if test is None:
        check_labelled(selection, "--valid (first half)")
        check_labelled(report, "--valid (second half)")
    train_split = Split.read(train_set, tc.batch_size)
    with_masks = masked_paths(train_split, tc.mode, tc.batch_size)
    check_writable(classifier, options)
    spec = classifier.spec
    first = classifier.to_input(next(iter(train_split.batches(tc.batch_size))).images)
    start = trainable(copy.deepcopy(classifier.layered), first,
                      (classifier.to_input(batch.images) for batch in train_split.batches(tc.batch_size)), str(classifier.path))
    LayerTaps(inner(start), list(tc.layers))  # an unknown --layers name fails here, on the layers that train
    splits = {"train": train_split, "valid": Split.read(selection, tc.batch_size), "test": Split.read(report, tc.batch_size)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoints").mkdir(exist_ok=True)

    inserted = list(getattr(start, "names", []))
    start_state = copy.deepcopy(start.state_dict())
    seeds = [tc.seed + k for k in range(config.seeds)]
    losses = [loss for loss in config.losses if loss != CONTROL]
    arms = [*losses, CONTROL]

    final = exportable(start)
    before = _measure(classifier, final, splits, report, tc.batch_size, out / "audit" / "before")
    example_batch = next(iter(report.batches(config.examples)))
    example_x = classifier.to_input(example_batch.images)
    maps = {"before": saliency_examples(final, example_x)}
    measured: dict[str, list[Measured]] = {arm: [] for arm in arms}
    rows: dict[str, list[dict[str, Any]]] = {arm: [] for arm in arms}
    histories: dict[str, dict[str, list[dict]]] = {arm: {} for arm in arms}  # keyed by str(seed), as in JSON
    model_paths: dict[str, str] = {}
    for seed in seeds:
        selected = select_masks(with_masks, config.mask_fraction, seed)
        data = TrainingData(train_split, spec, tc.mode, selected)
        longest = 0
        for arm in arms:
            model = copy.deepcopy(start)
            model.load_state_dict(start_state)
            run = replace(tc, loss=arm, seed=seed)
            if arm == CONTROL and losses:  # as many epochs as the longest loss run, no early stopping
                run = replace(run, epochs=longest, patience=None)
            progress.on_run(arm, seed, run.epochs)
            result = train(model, registry.get(arm), data, splits["valid"], run,
                           out / "checkpoints" / f"{arm}-seed{seed}.pt",
                           on_batch=progress.on_batch, on_epoch=progress.on_epoch, precision=config.precision)
            longest = max(longest, len(result.history))
            model.load_state_dict(result.state)
            final = exportable(model)
            outcome = _measure(classifier, final, splits, report, tc.batch_size, out / "audit" / f"{arm}-seed{seed}")
            outcome.row = {
                "seed": seed, **outcome.row, "best_epoch": result.best_epoch, "epochs": len(result.history),
                "stopped_early": result.stopped_early, "seconds": round(sum(h.seconds for h in result.history), 2),
                "masks_used": len(selected) if selected is not None else len(with_masks),
                "collapse": _collapse(result.history, result.best_epoch, outcome.evaluation, seed),
            }
            measured[arm].append(outcome)
            rows[arm].append(outcome.row)
            histories[arm][str(seed)] = [asdict(h) for h in result.history]
            if seed == seeds[0]:
                maps[arm] = saliency_examples(final, example_x)
                if arm != CONTROL or not losses:
                    path = out / f"model-{arm}{SUFFIXES[classifier.format]}"
                    model_paths[arm] = write_model(classifier, final, path).name  # beside results.json

    results: dict[str, Any] = {
        **header(SCHEMA, config.command, describe(classifier.device, config.precision)),
        "model": {"path": str(classifier.path), "format": classifier.format, "sha256": classifier.sha256,
                  "files": classifier.files, "fine_tuned": model_paths, "fine_tuned_seed": seeds[0]},
        "config": {**{k: v for k, v in asdict(tc).items() if k not in ("loss", "seed")}, "losses": losses,
                   "control": CONTROL, "seeds": seeds,
                   "mask_fraction": config.mask_fraction},
        "normalisation": {
            "training": "train mode: BatchNorm on batch statistics, running statistics updated",
            "inserted_batch_norm": inserted,
            "note": ("BatchNorm inserted after the convolutions listed (no normalisation read their output), "
                     "initialised to the identity from the training data and folded back on export")
            if inserted else "every convolution's output is already normalised; nothing inserted",
        },
        "data": {
            "train": str(train_set.base), "train_images": len(train_set), "train_with_mask": len(with_masks),
            "valid": str(selection.base), "valid_images": len(selection),
            "test": str(report.base), "test_images": len(report),
            "split": "--valid selects epochs, --test reports" if test is not None else
                     "no --test: the --valid set cut in two (per class, in path order, alternating); "
                     "the first half selects epochs, the second reports",
        },
        "before": before.row,
        "arms": {arm: {"loss": arm, **_summary(rows[arm]), "per_seed": rows[arm], "history": histories[arm]}
                 for arm in arms},
    }
    results["verdict"] = {
        loss: verdict(loss, [Outcome.of(m) for m in measured[loss]], [Outcome.of(m) for m in measured[CONTROL]],
                      Outcome.of(before), report_name="test" if test is not None else "held-out validation half")
        for loss in losses
    }
    results["table"] = _table(arms, results)
    write_results(results, out / "results.json")
    from audit.finetune.report import write_report

    write_report(results, example_batch, maps, out / "report.pdf")
    return results

