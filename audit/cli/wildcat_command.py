"""``audit wildcat``: replace a classifier's head with a WILDCAT head (Durand et al. 2017), train
it, and compare its class maps with the seven post-hoc methods of Aggarwal et al. (2020) Table 1."""

from __future__ import annotations

import math
import shlex
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from audit.cli.options import Channels, Device, InputSize, Mean, Multilabel, Precision, Seed, Std, ValueRange, model_options
from audit.cli.publishing import JsonOut, Quiet
from audit.errors import AuditError

#: What ``audit wildcat`` writes in OUT besides results.json (the model: model-wildcat.<suffix>).
OUTPUTS = ("report.pdf", "base", "wildcat", "model-wildcat.onnx", "model-wildcat.pt", "model-wildcat.pt2")


def check_head(maps: int, k_max: float, k_min: float, alpha: float) -> None:
    """The WILDCAT head's options, before anything loads (``finetune.wildcat.head``: M ≥ 1, α ≥ 0,
    k⁺ / k⁻ counts ≥ 1 or fractions in (0, 1), k⁻ = 0 allowed); whether a count fits the feature
    map is known once the model is cut (``build_wildcat``)."""
    from audit.finetune.wildcat.head import check_options, region_count

    check_options(maps, alpha)
    region_count(k_max, 1 << 62, "--k-max")
    region_count(k_min, 1 << 62, "--k-min", allow_zero=True)


def wildcat(
    model: Path = typer.Argument(..., help="TorchScript (.pt), torch.export (.pt2) or ONNX (.onnx) classifier."),
    data: Path = typer.Option(..., "--data", help="Training images: folder with one sub-folder per class, or CSV manifest."),
    valid: Path = typer.Option(..., "--valid", help="Validation images: the early stopping's loss."),
    test: Path = typer.Option(..., "--test", help="Test images both models are audited on (Table 1)."),
    regions: Optional[Path] = typer.Option(None, "--regions", help="Training region masks or boxes CSV (optional: WILDCAT trains on the labels alone; recorded)."),
    test_regions: Path = typer.Option(..., "--test-regions", help="Test region masks (folder) or boxes CSV: what localisation is scored against."),
    out: Path = typer.Option(..., "--out", help="Output folder (results.json, report.pdf, the model, base/ and wildcat/ audits)."),
    maps: int = typer.Option(4, "--maps", help="M, maps per class, averaged into its class map."),
    k_max: float = typer.Option(0.2, "--k-max", help="k⁺: highest pixels averaged, a count ≥ 1 or a fraction in (0, 1) of h·w."),
    k_min: float = typer.Option(0.2, "--k-min", help="k⁻: lowest pixels averaged, as --k-max; 0: no minimum term."),
    alpha: float = typer.Option(0.7, "--alpha", help="α ≥ 0, weight of the k⁻ lowest pixels' mean."),
    lr: float = typer.Option(3e-3, "--lr", help="Adam learning rate."),
    epochs: int = typer.Option(100, "--epochs", min=1, help="Epochs at most (early stopping usually ends sooner)."),
    patience: int = typer.Option(10, "--patience", min=1, help="Stop after this many epochs without a lower validation loss (the paper: 10)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Training and audit batch size (the paper: 64)."),
    freeze_features: bool = typer.Option(False, "--freeze-features", help="Train the head only (default: fine-tune every layer)."),
    multilabel: Multilabel = False,
    class_names: Optional[str] = typer.Option(None, "--class-names", help="Comma-separated class names."),
    target: str = typer.Option("predicted", "--target", help="Class whose map the audits explain: predicted, label or a class index."),
    randomization_images: int = typer.Option(32, "--randomization-images", min=0, help="Images for the randomisation sanity check of each audit (0 skips it)."),
    seed: Seed = 0,
    input_size: InputSize = None,
    channels: Channels = None,
    mean: Mean = None,
    std: Std = None,
    value_range_text: ValueRange = None,
    device: Device = None,
    precision: Precision = None,
    quiet: Quiet = False,
    json_out: JsonOut = False,
) -> None:
    """Train a WILDCAT head in place of the classifier's (Aggarwal et al. 2020) and audit both on the test set."""
    from audit.device import device_line, out_of_memory_as_error, resolve
    from audit.report.output_folder import OutputFolder
    from audit.report.results_file import dumps, write_results

    check_head(maps, k_max, k_min, alpha)
    if not (math.isfinite(lr) and lr > 0):
        raise AuditError(f"--lr {lr:g}: give a positive, finite learning rate, e.g. --lr 1e-3")
    chosen, precision = resolve(device, precision)
    options = model_options(input_size, channels, mean, std, value_range_text, multilabel, class_names, device=chosen)
    settings = Settings(maps, k_max, k_min, alpha, lr, epochs, patience, batch_size, freeze_features, multilabel, seed,
                        target, randomization_images, str(chosen), precision, shlex.join(["audit", *sys.argv[1:]]))
    err = Console(stderr=True)
    if not quiet:
        err.print(device_line(chosen, precision), highlight=False)
    inputs = (model, data, valid, test, regions, test_regions)
    with OutputFolder(out, "results.json", reserved=OUTPUTS, inputs=inputs) as folder:
        opened = open_inputs(model, options, data, valid, test, regions, test_regions, folder)
        check_target(target, opened.classifier)
        with _progress(err, quiet) as bar, out_of_memory_as_error(batch_size):
            results = run_wildcat(opened, settings, folder.staging, bar)
        folder.publish(results, write_results)
    if json_out:
        sys.stdout.write(dumps(results) + "\n")
    else:
        Console(highlight=False, soft_wrap=True).print(results["wildcat"]["summary"]["sentence"])
    if not quiet:
        err.print(f"wrote {out / 'results.json'}, {out / 'report.pdf'}, {out / results['wildcat']['model']['path']} "
                  f"and the audits in {out / 'base'} and {out / 'wildcat'}", highlight=False)


def _progress(err: Console, quiet: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[note]}"), TimeElapsedColumn(), console=err, disable=quiet, transient=True)


def register(app: typer.Typer) -> None:
    app.command("wildcat")(wildcat)


@dataclass(frozen=True)
class Settings:
    """The command's options, as results.json's ``wildcat.options`` records them."""

    maps: int
    k_max: float
    k_min: float
    alpha: float
    lr: float
    epochs: int
    patience: int
    batch_size: int
    freeze_features: bool
    multilabel: bool
    seed: int
    target: str
    randomization_images: int
    device: str
    precision: str
    command: str


@dataclass
class Opened:
    """The loaded inputs: the classifier (and the options it was loaded with) and the three sets."""

    classifier: Any
    options: Any
    train: Any
    valid: Any
    test: Any


def open_inputs(model: Path, options: Any, data: Path, valid: Path, test: Path, regions: Path | None,
                test_regions: Path, folder: Any) -> Opened:
    """The classifier and the three datasets, their classes checked against its outputs; the
    dataset's class names name the outputs when ``--class-names`` is not given."""
    from audit.data.compatibility import check_classes
    from audit.data.dataset import open_dataset
    from audit.models.loader import load_classifier

    classifier = load_classifier(model, options)
    size, channels = (classifier.spec.height, classifier.spec.width), classifier.spec.channels
    sets = {"train": open_dataset(data, size=size, channels=channels, regions=regions),
            "valid": open_dataset(valid, size=size, channels=channels),
            "test": open_dataset(test, size=size, channels=channels, regions=test_regions)}
    for path, dataset in zip((data, valid, test), sets.values()):
        check_classes(classifier, dataset, path, options.class_names)
        folder.protect(dataset.base / relative for relative, _ in dataset.entries)
    if options.class_names is None and len(sets["test"].classes) == classifier.num_classes:
        classifier.class_names = list(sets["test"].classes)
    return Opened(classifier, options, **sets)


def check_target(target: str, classifier: Any) -> None:
    """``--target`` against the model's outputs, before anything trains."""
    from audit.target import Target

    Target.parse(target, classifier.num_classes)


def run_wildcat(opened: Opened, settings: Settings, out: Path, bar: Progress) -> dict[str, Any]:
    """Cut and train, write the model, audit both models, write report.pdf; the results document."""
    import torch

    from audit.device import describe
    from audit.finetune.export import SUFFIXES
    from audit.finetune.wildcat.comparison import AuditSettings, audit_models, runnable, summary, table
    from audit.finetune.wildcat.export import write_wildcat
    from audit.finetune.wildcat.network import build_wildcat
    from audit.models.loader import load_classifier
    from audit.report.results_file import SCHEMA, header
    from audit.progress import RichPhases
    from audit.report.wildcat_page import write_wildcat_page

    classifier = opened.classifier
    net = build_wildcat(classifier, maps=settings.maps, k_max=settings.k_max, k_min=settings.k_min, alpha=settings.alpha,
                        seed=settings.seed)
    left_out = runnable(classifier)
    with torch.no_grad():
        cut = {"layer": net.layer, "shape": list(net.features(classifier.to_input(next(opened.test.batches(1)).images)).shape[1:])}
    training = _train(net, opened, settings, bar)
    path = write_wildcat(classifier, net, out / f"model-wildcat{SUFFIXES[classifier.format]}")
    trained = load_classifier(path, opened.options)
    trained.class_names = list(classifier.class_names)
    audits = audit_models({"base": classifier, "wildcat": trained}, opened.test,
                          AuditSettings(settings.target, settings.batch_size, settings.seed, settings.randomization_images,
                                        settings.device, settings.precision, settings.command),
                          out, phases=lambda name: RichPhases(bar, f"{name}: ", note=""), left_out=left_out)
    rows = table(audits, left_out)
    results = {
        **header(SCHEMA, settings.command, describe(classifier.device, settings.precision)),
        "model": {"path": str(classifier.path), "format": classifier.format, "sha256": classifier.sha256,
                  "files": classifier.files, "classes": list(classifier.class_names), "multilabel": classifier.multilabel},
        "data": _data(opened),
        "wildcat": {
            "options": {k: v for k, v in asdict(settings).items() if k not in ("device", "precision", "command")},
            "target": settings.target,
            "cut": cut,
            "training": training,
            "model": {"path": path.name, "format": trained.format, "sha256": trained.sha256, "files": trained.files},
            "audits": {"base": "base/results.json", "wildcat": "wildcat/results.json"},
            "table": rows,
            "summary": summary(rows),
        },
        "warnings": [*(f"{method} left out of the base model's audit: {why}" for method, why in left_out.items()),
                     *(w for name in ("base", "wildcat") for w in audits[name]["warnings"])],
    }
    write_wildcat_page(results, out / "report.pdf")
    return results


def _data(opened: Opened) -> dict[str, Any]:
    train, valid, test = opened.train, opened.valid, opened.test
    return {"train": train.root, "train_images": len(train), "train_regions": None if train.regions is None else str(train.regions),
            "valid": valid.root, "valid_images": len(valid),
            "test": test.root, "test_images": len(test), "test_regions": str(test.regions)}


def _train(net: Any, opened: Opened, settings: Settings, bar: Progress) -> dict[str, Any]:
    """Train ``net`` in place (``finetune.wildcat.training``); the history and its summary."""
    from audit.finetune.data import Split
    from audit.finetune.wildcat.training import WildcatConfig, prepare, train_wildcat

    config = WildcatConfig(epochs=settings.epochs, lr=settings.lr, batch_size=settings.batch_size, patience=settings.patience,
                           seed=settings.seed, freeze_features=settings.freeze_features)
    train, valid = Split.read(opened.train, settings.batch_size), Split.read(opened.valid, settings.batch_size)
    task = bar.add_task("training WILDCAT", total=settings.epochs, note="")

    def on_epoch(log: Any) -> None:
        auc = "–" if log.valid_auc is None else f"{log.valid_auc:.3f}"
        bar.update(task, advance=1, note=f"loss {log.train_loss:.3g}, valid loss {log.valid_loss:.3g}, AUC {auc}")

    classifier = opened.classifier
    result = train_wildcat(prepare(net, classifier, train, config), train, valid, classifier.spec, config,
                           multilabel=classifier.multilabel, on_epoch=on_epoch)
    return {"epochs": len(result.history), "best_epoch": result.best_epoch, "best_valid_loss": result.best_loss,
            "stopped_early": result.stopped_early, "seconds": round(sum(h.seconds for h in result.history), 2),
            "history": [{"epoch": h.epoch, "train_loss": h.train_loss, "valid_loss": h.valid_loss, "valid_auc": h.valid_auc}
                        for h in result.history]}
