"""``audit run``: load, stream, compute, write results."""

from __future__ import annotations

import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from audit.cli.options import (Channels, Device, InputSize, Mean, Multilabel, Precision, Seed, Std, ValueRange, Workers,
                                method_options, model_options)
from audit.cli.publishing import AllowMissing, FailOn, Gate, GateConfig, JsonOut, Junit, Quiet, Report
from audit.progress import RichPhases

if TYPE_CHECKING:
    from audit.pipeline import RunConfig
    from audit.report.output_folder import OutputFolder
    from audit.shards.job import RunInputs


#: What ``audit run`` writes in OUT besides results.json; no --report or --junit may take these names.
RUN_OUTPUTS = ("per_image.csv", "per_image.partial.csv", "maps", "strips")
#: Where ``--engine ray`` writes its part folders, OUT/parts/I.
PARTS = "parts"


class Engine(str, Enum):
    local = "local"
    ray = "ray"


def run(
    model: Path = typer.Argument(..., help="TorchScript (.pt/.ts), torch.export (.pt2) or ONNX (.onnx) classifier."),
    data: Path = typer.Option(..., "--data", help="Image folder (one sub-folder per class) or CSV manifest (path,label)."),
    masks: Optional[Path] = typer.Option(None, "--masks", help="Artefact masks: pixels that must not drive the decision."),
    regions: Optional[Path] = typer.Option(None, "--regions", help="Region-of-interest masks (a folder, or a boxes CSV: path,x,y,width,height): where the evidence should be."),
    method: list[str] = typer.Option(["gradient"], "--method", "-m", help="Saliency method (repeatable); `audit plugins` lists them."),
    option: list[str] = typer.Option([], "--option", "-o", help="Method option METHOD.KEY=VALUE (repeatable)."),
    counterfactuals: bool = typer.Option(False, "--counterfactuals", help="Add Latent Shift counterfactual maps (method latentshift-max); needs --autoencoder."),
    autoencoder: Optional[Path] = typer.Option(None, "--autoencoder", help="Autoencoder for the latentshift-* methods (audit train-autoencoder)."),
    target: str = typer.Option("predicted", "--target", help="Class to explain: predicted, label or a class index."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default audit-out; with --shard, the part folder)."),
    input_size: InputSize = None,
    channels: Channels = None,
    mean: Mean = None,
    std: Std = None,
    value_range_text: ValueRange = None,
    multilabel: Multilabel = False,
    class_names: Optional[str] = typer.Option(None, "--class-names", help="Comma-separated class names."),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    seed: Seed = 0,
    randomization_images: int = typer.Option(32, "--randomization-images", min=0, help="Images for the randomisation sanity check (0 skips it)."),
    strict: bool = typer.Option(False, "--strict", help="Fail on an unreadable image instead of skipping it."),
    mask_dilate: int = typer.Option(0, "--mask-dilate", min=0, help="Dilate masks by this many pixels."),
    mask_blur: float = typer.Option(0.0, "--mask-blur", min=0.0, help="Gaussian σ of the mask blur rule (Viviano et al.)."),
    device: Device = None,
    precision: Precision = None,
    workers: Workers = None,
    shard: Optional[str] = typer.Option(None, "--shard", help="Audit only the I-th of N contiguous ranges of the dataset into the part folder --out; `audit merge` the parts."),
    engine: Engine = typer.Option(Engine.local, "--engine", help="local: this process; ray: every shard a Ray task, then the merge."),
    address: Optional[str] = typer.Option(None, "--address", help="--engine ray: the cluster (HOST:PORT, auto or ray://HOST:PORT); default: start a local one."),
    shards: Optional[int] = typer.Option(None, "--shards", min=1, help="--engine ray: number of shards (default: one per GPU with CUDA, else per CPU; at most 64)."),
    fail_on: FailOn = [],
    allow_missing: AllowMissing = None,
    config: GateConfig = None,
    junit: Junit = None,
    report: Report = None,
    quiet: Quiet = False,
    json_out: JsonOut = False,
) -> None:
    """Audit a classifier on a dataset: predictions, saliency maps and their metrics."""
    from audit.cli.publishing import Destinations, announce, publish_run
    from audit.device import device_line, requested, resolve
    from audit.pipeline import RunConfig
    from audit.report.output_folder import OutputFolder
    from audit.shards import parse_shard
    from audit.shards.job import RunInputs

    check_engine(shard, out, engine, address, shards, bool(fail_on or junit or report or json_out))
    out = Path("audit-out") if out is None else out
    chosen = list(dict.fromkeys([*method, *(["latentshift-max"] if counterfactuals else [])]))
    per_method = with_autoencoder(method_options(option, chosen), chosen, autoencoder)
    gate = Gate.parse(fail_on, config, allow_missing, chosen)
    if engine is Engine.ray:  # each task checks the device on its own node (``ray_engine``)
        device_text, precision, _ = requested(device, precision, config)
        chosen_device = None
    else:
        chosen_device, precision = resolve(device, precision, config)
        device_text = str(chosen_device)
    options = model_options(input_size, channels, mean, std, value_range_text, multilabel, class_names, device=chosen_device)
    inputs = RunInputs(model, data, masks, regions, options, mask_dilate, mask_blur, strict, autoencoder)
    run_config = RunConfig(
        methods=chosen,
        method_options=per_method,
        target=target,
        batch_size=batch_size,
        seed=seed,
        randomization_images=randomization_images,
        command=shlex.join(["audit", *sys.argv[1:]]),
        device=device_text,
        precision=precision,
        workers=workers,
        shard=None if shard is None else parse_shard(shard),
    )
    err = Console(stderr=True)
    if not quiet and chosen_device is not None:
        err.print(device_line(chosen_device, precision), highlight=False)
    if run_config.shard is not None:
        _run_shard(inputs, run_config, out, err, quiet)
        return
    with OutputFolder(out, "results.json", reserved=(*RUN_OUTPUTS, PARTS), inputs=inputs.paths()) as folder:
        where = Destinations.of(folder, report, junit)
        if engine is Engine.ray:
            results = _run_on_ray(inputs, run_config, out, folder.staging, shards, address, err, quiet)
        else:
            results = _run_here(inputs, run_config, folder, err, quiet, gate)
        publish_run(results, folder, gate, where, quiet)
    announce(results, out, folder.published(where.report), gate, json_out, quiet)


def check_engine(shard: str | None, out: Path | None, engine: Engine, address: str | None, shards: int | None, publishes: bool) -> None:
    """The combinations of --shard, --out, --engine, --address and --shards that make sense."""
    from audit.errors import AuditError

    if shard is not None and engine is Engine.ray:
        raise AuditError(f"--shard {shard}: --engine ray runs every shard itself; drop --shard, or run the shard with --engine local")
    if shard is not None and out is None:
        raise AuditError(f"--shard {shard}: needs --out PART, the folder this shard's part goes to (e.g. --out parts/1); "
                         f"then `audit merge parts/* --out OUT`")
    if shard is not None and publishes:
        raise AuditError(f"--shard {shard}: a part has no results to gate or report; give --fail-on, --junit, --report "
                         f"and --json to `audit merge`")
    if engine is Engine.local and (address is not None or shards is not None):
        flag = "--address" if address is not None else "--shards"
        raise AuditError(f"{flag}: only with --engine ray; add --engine ray, or drop {flag}")


def _progress(err: Console, quiet: bool) -> Progress:
    """One bar per phase (``audit.progress.RichPhases``): done/total, time spent and time left."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        console=err,
        disable=quiet,
        transient=True,
    )


def _run_here(inputs: RunInputs, run_config: RunConfig, folder: OutputFolder, err: Console, quiet: bool, gate: Gate) -> dict[str, Any]:
    """The whole audit in this process, into ``folder``'s staging folder; the gate's keys are
    checked against the run's outline before the first image."""
    from audit.pipeline import run_audit

    classifier, dataset = inputs.open()
    if not quiet and classifier.format == "onnx":
        err.print(f"onnxruntime provider: {classifier.provider}", highlight=False)
    folder.protect(dataset.base / relative for relative, _ in dataset.entries)
    with _progress(err, quiet) as progress:
        return run_audit(classifier, dataset, run_config, folder.staging, RichPhases(progress),
                         on_start=gate.check_keys if gate.expressions else None)


def _run_shard(inputs: RunInputs, run_config: RunConfig, out: Path, err: Console, quiet: bool) -> None:
    """One shard into the part folder ``out`` (``audit.shards.part``); `audit merge` the parts."""
    from audit.shards.run import run_part

    index, count = run_config.shard
    with _progress(err, quiet) as progress:
        document = run_part(inputs, run_config, out, RichPhases(progress, f"shard {index}/{count}: "))
    if not quiet:
        images = document["shard"]["stop"] - document["shard"]["start"]
        err.print(f"shard {index}/{count}: {images} images; part written to {out} (merge the parts with `audit merge`)",
                  highlight=False, markup=False, soft_wrap=True)


def _run_on_ray(inputs: RunInputs, run_config: RunConfig, out: Path, staging: Path, shards: int | None, address: str | None,
                err: Console, quiet: bool) -> dict[str, Any]:
    """Every shard a Ray task into OUT/parts/I, then their merge into ``staging``."""
    from audit.shards.merge import merge_parts, read_parts
    from audit.shards.ray_engine import run_on_ray

    def echo(line: str) -> None:
        if not quiet:
            err.print(line, highlight=False, markup=False, soft_wrap=True)

    folders = run_on_ray(inputs, run_config, out / PARTS, shards, address, echo)
    return merge_parts(read_parts(folders), staging)


def with_autoencoder(options: dict[str, dict], chosen: list[str], autoencoder: Path | None) -> dict[str, dict]:
    """Give every latentshift-* method ``--autoencoder`` unless its own option names one."""
    from audit.errors import AuditError

    for name in chosen:
        if not name.startswith("latentshift-"):
            continue
        if autoencoder is not None:
            options.setdefault(name, {}).setdefault("autoencoder", str(autoencoder))
        if "autoencoder" not in options.get(name, {}):
            raise AuditError(f"{name} needs an autoencoder: pass --autoencoder AE.pt (train one with `audit train-autoencoder`)")
    return options


def register(app: typer.Typer) -> None:
    app.command("run")(run)
