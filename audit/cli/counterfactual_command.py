"""``audit train-autoencoder`` and ``audit counterfactual``: Latent Shift (Cohen et al. 2021)."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from audit.cli.options import Channels, Device, InputSize, Mean, Multilabel, Precision, Seed, Std, ValueRange, model_options
from audit.errors import AuditWarning

#: share of images whose prediction the reconstruction may change before `audit counterfactual` warns
CHANGED_PREDICTIONS = 0.1


def train_autoencoder_command(
    data: Path = typer.Option(..., "--data", help="Image folder (one sub-folder per class) or CSV manifest."),
    out: Path = typer.Option(..., "--out", help="Weights file to write (its config goes to the same name with .json)."),
    epochs: int = typer.Option(30, "--epochs", min=1),
    bottleneck: int = typer.Option(8, "--bottleneck", min=1, help="Latent channels (at 1/4 of the input size)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    lr: float = typer.Option(3e-3, "--lr", min=0.0),
    seed: Seed = 0,
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Share of images held out for early stopping."),
    patience: int = typer.Option(5, "--patience", min=1, help="Epochs without a better validation loss before stopping."),
    size: Optional[tuple[int, int]] = typer.Option(None, "--size", help="H W to train at (default: the first image's size)."),
    channels: Channels = None,
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT's checkpoint (OUT.resume.pt)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    device: Device = None,
    precision: Precision = None,
) -> None:
    """Train a ResNet autoencoder (elastic loss) for Latent Shift counterfactuals."""
    from audit.counterfactual.training import TrainConfig, train_autoencoder
    from audit.device import device_line, out_of_memory_as_error, resolve

    chosen, precision = resolve(device, precision)
    if not quiet:
        Console(stderr=True).print(device_line(chosen, precision), highlight=False)

    config = TrainConfig(
        epochs=epochs, bottleneck=bottleneck, batch_size=batch_size, lr=lr, seed=seed,
        val_fraction=val_fraction, patience=patience, size=size, channels=channels,
    )
    with out_of_memory_as_error(batch_size):
        result = train_autoencoder(data, out, config, resume=resume, progress=not quiet, device=chosen, precision=precision)
    if not quiet:
        stop = "stopped early" if result.stopped_early else "done"
        Console(stderr=True).print(
            f"{stop} after {result.epochs_run} epochs; best validation loss {result.best_val_loss:.4f} "
            f"(epoch {result.best_epoch}) written to {out}",
            highlight=False,
        )


def counterfactual_command(
    model: Path = typer.Argument(..., help="TorchScript (.pt/.ts), torch.export (.pt2) or ONNX (.onnx) classifier."),
    autoencoder: str = typer.Option(..., "--autoencoder", help="AE.pt (audit train-autoencoder), TorchScript with encode/decode, or ENC.onnx,DEC.onnx."),
    data: Path = typer.Option(..., "--data", help="Image folder (one sub-folder per class) or CSV manifest."),
    out: Path = typer.Option(..., "--out", help="Output folder."),
    target: str = typer.Option("predicted", "--target", help="Class to explain: predicted, label or a class index."),
    rule: str = typer.Option("paper", "--rule", help="λ search: paper (drop 0.3, rise 0.05, step 10) or public (drop 0.15, steps -1 then -10)."),
    drop: Optional[float] = typer.Option(None, "--drop", help="Stop when the prediction fell by more than this."),
    rise: Optional[float] = typer.Option(None, "--rise", help="Upper search: stop when it rose by more than this."),
    floor: Optional[float] = typer.Option(None, "--floor", help="Stop when the prediction falls under this."),
    bound: Optional[float] = typer.Option(None, "--bound", help="Stop when |λ| reaches this."),
    step: Optional[float] = typer.Option(None, "--step", help="λ step."),
    fine_step: Optional[float] = typer.Option(None, "--fine-step", help="λ step while |λ| < --step."),
    max_pixel_change: Optional[float] = typer.Option(None, "--max-pixel-change", help="Stop when Σ|x0-xλ| > this · Σ|x0|."),
    turn_tolerance: Optional[float] = typer.Option(None, "--turn-tolerance", help="A rise smaller than this does not end the search."),
    frames: int = typer.Option(10, "--frames", min=2, help="Frames from λ_low to 0."),
    upper_frames: int = typer.Option(3, "--upper-frames", min=0, help="Frames from 0 to λ_high (rules with an upper search)."),
    direction: str = typer.Option("unit", "--direction", help="unit (gradient scaled to |z|/100) or gradient (the paper's raw dp/dz)."),
    input_size: InputSize = None,
    channels: Channels = None,
    mean: Mean = None,
    std: Std = None,
    value_range_text: ValueRange = None,
    multilabel: Multilabel = False,
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", min=1, help="Images per batch [default: as many as keep a batch's frames within 256 MiB, at most 128]."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    json_out: bool = typer.Option(False, "--json", help="Print summary.json to stdout, everything else to stderr."),
    device: Device = None,
    precision: Precision = None,
) -> None:
    """Latent Shift counterfactuals per image: GIF, PNG strip, maps, a CSV row; summary.json."""
    from audit.counterfactual.explain import ShiftOptions
    from audit.counterfactual.method import checked_autoencoder
    from audit.counterfactual.outputs import run_counterfactuals
    from audit.counterfactual.search import rule as search_rule
    from audit.data.compatibility import check_classes
    from audit.data.dataset import open_dataset
    from audit.counterfactual.outputs import COUNTERFACTUAL_OUTPUTS, write_summary
    from audit.device import describe, device_line, out_of_memory_as_error, precision_context, resolve
    from audit.models.loader import load_classifier
    from audit.report.output_folder import OutputFolder
    from audit.target import Target

    thresholds = dict(
        drop=drop, rise=rise, floor=floor, bound=bound, step=step, fine_step=fine_step,
        max_pixel_change=max_pixel_change, turn_tolerance=turn_tolerance,
    )
    options = ShiftOptions(rule=search_rule(rule, **thresholds), frames=frames, upper_frames=upper_frames, direction=direction)
    chosen, precision = resolve(device, precision)
    with OutputFolder(out, "summary.json", reserved=COUNTERFACTUAL_OUTPUTS, inputs=(model, data, *autoencoder_files(autoencoder))) as folder:
        classifier = load_classifier(model, model_options(input_size, channels, mean, std, value_range_text, multilabel,
                                                          device=chosen))
        explained = Target.parse(target, classifier.num_classes)
        ae = checked_autoencoder(autoencoder, classifier.spec.shape)
        dataset = open_dataset(data, size=(classifier.spec.height, classifier.spec.width), channels=classifier.spec.channels)
        check_classes(classifier, dataset, data)
        folder.protect(dataset.base / relative for relative, _ in dataset.entries)
        if len(dataset.classes) == classifier.num_classes:
            classifier.class_names = list(dataset.classes)
        err = Console(stderr=True)
        if not quiet:
            err.print(device_line(chosen, precision), highlight=False)
        columns = (TextColumn("counterfactuals"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=err, disable=quiet, transient=True) as progress, \
                precision_context(chosen, precision), out_of_memory_as_error(batch_size):
            task = progress.add_task("counterfactuals", total=len(dataset))
            summary = run_counterfactuals(
                classifier, ae, dataset, folder.staging, options, target=explained, batch_size=batch_size,
                on_batch=lambda n: progress.advance(task, n),
            )
        summary["run"] = describe(chosen, precision)
        folder.publish(summary, write_summary)
    changed = summary["reconstruction"]["changed_predictions"]
    if changed > CHANGED_PREDICTIONS:
        warnings.warn(f"the autoencoder's reconstructions change the prediction of {changed:.0%} of the images: their "
                      f"counterfactual frames start from another class and show the autoencoder, not the model; train a "
                      f"better one (audit train-autoencoder: more epochs, a larger --bottleneck)", AuditWarning, stacklevel=1)
    if json_out:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    if not quiet:
        rec = summary["reconstruction"]
        err.print(
            f"{summary['data']['images']} images: {summary['status']}; mean f(x) {rec['mean_p_original']:.3f}, "
            f"f(D(E(x))) {rec['mean_p_reconstruction']:.3f}; accuracy {rec['accuracy_original']} on originals, "
            f"{rec['accuracy_reconstruction']} on reconstructions; written to {out}",
            highlight=False,
        )


def autoencoder_files(autoencoder: str) -> list[Path]:
    """The files ``--autoencoder`` names: AE.pt and its AE.json, or ENCODER.onnx,DECODER.onnx."""
    files = [Path(part) for part in autoencoder.split(",") if part]
    return [*files, *(f.with_suffix(".json") for f in files)]


def register(app: typer.Typer) -> None:
    app.command("train-autoencoder")(train_autoencoder_command)
    app.command("counterfactual")(counterfactual_command)
