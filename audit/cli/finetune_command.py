"""``audit finetune``: fine-tune with actdiff / gradmask / controls and judge whether it helped."""

from __future__ import annotations

import math
import shlex
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from audit.cli.options import Channels, Device, InputSize, Mean, Precision, Seed, Std, ValueRange, fraction, model_options
from audit.cli.summary import print_failed_checks


def finetune(
    model: Path = typer.Argument(..., help="TorchScript (.pt), torch.export (.pt2) or ONNX (.onnx) classifier."),
    data: Path = typer.Option(..., "--data", help="Training images: folder with one sub-folder per class, or CSV manifest."),
    valid: Path = typer.Option(..., "--valid", help="Validation images: select the epoch and stop early."),
    test: Optional[Path] = typer.Option(None, "--test", help="Test images the verdict reports on (default: half of --valid, held out)."),
    regions: Optional[Path] = typer.Option(None, "--regions", help="Training region masks (a folder, or a boxes CSV: path,x,y,width,height): keep the region, permute the rest (the paper)."),
    masks: Optional[Path] = typer.Option(None, "--masks", help="Training artefact masks: permute the artefact pixels instead."),
    valid_regions: Optional[Path] = typer.Option(None, "--valid-regions", help="Validation region masks (IoU of the saliency maps)."),
    valid_masks: Optional[Path] = typer.Option(None, "--valid-masks", help="Validation artefact masks (enrichment on the artefact)."),
    test_regions: Optional[Path] = typer.Option(None, "--test-regions", help="Test region masks (IoU of the saliency maps)."),
    test_masks: Optional[Path] = typer.Option(None, "--test-masks", help="Test artefact masks (enrichment on the artefact)."),
    loss: list[str] = typer.Option(..., "--loss", help="actdiff, gradmask, actdiff+gradmask, classify-masked, none, or a plugin's (repeatable; one shared control)."),
    epochs: int = typer.Option(30, "--epochs", min=1, help="Epochs at most (the control gets the same)."),
    lr: float = typer.Option(3e-3, "--lr", help="Adam learning rate."),
    lambda_act: float = typer.Option(1.0, "--lambda-act", help="Weight of the actdiff penalty."),
    lambda_grad: float = typer.Option(10.0, "--lambda-grad", help="Weight of the gradmask penalty."),
    layers: str = typer.Option("features", "--layers", help="Comma-separated actdiff layers (default: the pooled features before the classifier)."),
    blur: float = typer.Option(0.5, "--blur", min=0.0, help="σ of the mask blur rule applied to training masks."),
    mask_fraction: float = typer.Option(1.0, "--mask-fraction", callback=fraction, help="Use masks for only this fraction of the training images that have one."),
    seeds: int = typer.Option(1, "--seeds", min=1, help="Repeat with this many seeds (mean and spread reported)."),
    seed: Seed = 0,
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    patience: int = typer.Option(10, "--patience", min=1, help="Stop after this many epochs without a better validation AUC."),
    out: Path = typer.Option(..., "--out", help="Output folder (results.json, report.pdf, model, checkpoints)."),
    input_size: InputSize = None,
    channels: Channels = None,
    mean: Mean = None,
    std: Std = None,
    value_range_text: ValueRange = None,
    fail_on: list[str] = typer.Option([], "--fail-on", help="Fail (exit 1) when this holds, e.g. 'verdict.actdiff.generalisation == \"collapsed\"' (repeatable)."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="A check on a null value is skipped instead of failing."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write the gate checks as JUnit XML."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    json_out: bool = typer.Option(False, "--json", help="Print results.json to stdout, everything else to stderr."),
    device: Device = None,
    precision: Precision = None,
) -> None:
    """Fine-tune a classifier away from a distractor (Viviano et al. 2019) and compare with plain training."""
    from audit.data.compatibility import check_classes
    from audit.data.dataset import open_dataset
    from audit.device import device_line, out_of_memory_as_error, resolve
    from audit.errors import AuditError
    from audit.finetune.experiment import ExperimentConfig, Progress as Callbacks, run_experiment
    from audit.finetune.training import TrainConfig
    from audit.models.loader import load_classifier
    from audit.report.gate import evaluate_gate, validate_expressions, write_junit
    from audit.report.gate.expressions import Group
    from audit.report.output_folder import OutputFolder
    from audit.report.results_file import write_results

    layer_names = tuple(n.strip() for n in layers.split(",") if n.strip())
    if not layer_names:
        raise AuditError(f"--layers {layers!r}: give at least one layer name, e.g. --layers features")
    trained = [name for name in loss if name != "none"]
    validate_expressions(fail_on, groups={"verdict": Group("loss with a verdict (the none control has none)", "--loss", trained),
                                          "arms": Group("loss", "--loss", [*trained, "none"])})
    if (regions is None) == (masks is None):
        raise AuditError("give exactly one of --regions (keep the region, permute the rest) or --masks (permute the artefact)")
    if test is None and (test_masks is not None or test_regions is not None):
        raise AuditError("--test-regions and --test-masks need --test; without --test the verdict reports on half of "
                         "--valid, with --valid-regions and --valid-masks")
    chosen, precision = resolve(device, precision)
    options = model_options(input_size, channels, mean, std, value_range_text, device=chosen)
    inputs = (model, data, valid, test, regions, masks, valid_regions, valid_masks, test_regions, test_masks)
    with OutputFolder(out, "results.json", reserved=("report.pdf", "audit", "checkpoints"), inputs=inputs) as folder:
        junit_path = None if junit is None else folder.destination(junit, "junit.xml", "--junit")
        folder.carry_over("checkpoints")  # resume where a finished or interrupted run left off
        classifier = load_classifier(model, options)
        size, chans = (classifier.spec.height, classifier.spec.width), classifier.spec.channels
        train_set = open_dataset(data, size=size, channels=chans, masks=masks, regions=regions, mask_blur=blur)
        valid_set = open_dataset(valid, size=size, channels=chans, masks=valid_masks, regions=valid_regions)
        test_set = None if test is None else open_dataset(test, size=size, channels=chans, masks=test_masks, regions=test_regions)
        for path, checked in ((data, train_set), (valid, valid_set), (test, test_set)):
            if checked is not None:
                check_classes(classifier, checked, path)
                folder.protect(checked.base / relative for relative, _ in checked.entries)
        if len(valid_set.classes) == classifier.num_classes:
            classifier.class_names = list(valid_set.classes)
        config = ExperimentConfig(
            train=TrainConfig(loss=loss[0], epochs=epochs, lr=lr, lambda_act=lambda_act, lambda_grad=lambda_grad,
                              layers=layer_names, batch_size=batch_size,
                              seed=seed, patience=patience, mode="regions" if regions is not None else "masks"),
            losses=tuple(loss), seeds=seeds, mask_fraction=mask_fraction, command=shlex.join(["audit", *sys.argv[1:]]),
            precision=precision,
        )
        err = Console(stderr=True)
        if not quiet:
            err.print(device_line(chosen, precision), highlight=False)
        steps = epochs * math.ceil(len(train_set) / batch_size)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("loss {task.fields[loss]}  valid AUC {task.fields[auc]}"), TimeElapsedColumn(),
                      console=err, disable=quiet) as bar:
            current: list = []

            def on_run(arm: str, run_seed: int, total_epochs: int) -> None:
                current[:] = [bar.add_task(f"{arm} seed {run_seed}", total=steps, loss="–", auc="–")]

            def on_batch(terms: dict[str, float]) -> None:
                shown = " ".join(f"{k}={v:.3g}" for k, v in terms.items())
                bar.update(current[0], advance=1, loss=shown)

            def on_epoch(log) -> None:
                auc = "–" if log.valid_auc is None else f"{log.valid_auc:.3f}"
                bar.update(current[0], auc=f"{auc} (epoch {log.epoch})")

            with out_of_memory_as_error(batch_size):
                results = run_experiment(classifier, options, train_set, valid_set, test_set, config, folder.staging,
                                         Callbacks(on_run=on_run, on_batch=on_batch, on_epoch=on_epoch))
        if fail_on:
            results["gate"] = evaluate_gate(results, fail_on, allow_missing)
        if junit_path is not None:
            write_junit(results.get("gate", {"checks": [], "passed": True, "allow_missing": allow_missing}), junit_path)
        folder.publish(results, write_results)
    if json_out:
        from audit.report.results_file import dumps

        sys.stdout.write(dumps(results) + "\n")
    for block in results["verdict"].values():
        Console(highlight=False, stderr=json_out, soft_wrap=True).print(block["sentence"], markup=False)
    if not quiet:
        models = ", ".join(str(out / name) for name in results["model"]["fine_tuned"].values())
        err.print(f"wrote {out / 'results.json'}, {out / 'report.pdf'} and {models}", highlight=False)
    if fail_on and not results["gate"]["passed"]:
        print_failed_checks(results["gate"])
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)
