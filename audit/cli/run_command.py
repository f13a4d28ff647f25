"""``audit run``: load, stream, compute, write results."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from audit.cli.options import Channels, InputSize, Mean, Multilabel, Seed, Std, ValueRange, method_options, model_options


#: What ``audit run`` writes in OUT besides results.json; no --report or --junit may take these names.
RUN_OUTPUTS = ("per_image.csv", "per_image.partial.csv", "maps", "strips")


def run(
    model: Path = typer.Argument(..., help="TorchScript (.pt/.ts), torch.export (.pt2) or ONNX (.onnx) classifier."),
    data: Path = typer.Option(..., "--data", help="Image folder (one sub-folder per class) or CSV manifest (path,label)."),
    masks: Optional[Path] = typer.Option(None, "--masks", help="Artefact masks: pixels that must not drive the decision."),
    regions: Optional[Path] = typer.Option(None, "--regions", help="Region-of-interest masks: where the evidence should be."),
    method: list[str] = typer.Option(["gradient"], "--method", "-m", help="Saliency method (repeatable); `audit plugins` lists them."),
    option: list[str] = typer.Option([], "--option", "-o", help="Method option METHOD.KEY=VALUE (repeatable)."),
    counterfactuals: bool = typer.Option(False, "--counterfactuals", help="Add Latent Shift counterfactual maps (method latentshift-max); needs --autoencoder."),
    autoencoder: Optional[Path] = typer.Option(None, "--autoencoder", help="Autoencoder for the latentshift-* methods (audit train-autoencoder)."),
    target: str = typer.Option("predicted", "--target", help="Class to explain: predicted, label or a class index."),
    out: Path = typer.Option(Path("audit-out"), "--out", help="Output folder."),
    input_size: InputSize = None,
    channels: Channels = None,
    mean: Mean = "0",
    std: Std = "1",
    value_range_text: ValueRange = "0,1",
    multilabel: Multilabel = False,
    class_names: Optional[str] = typer.Option(None, "--class-names", help="Comma-separated class names."),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    seed: Seed = 0,
    randomization_images: int = typer.Option(32, "--randomization-images", min=0, help="Images for the randomisation sanity check (0 skips it)."),
    strict: bool = typer.Option(False, "--strict", help="Fail on an unreadable image instead of skipping it."),
    mask_dilate: int = typer.Option(0, "--mask-dilate", min=0, help="Dilate masks by this many pixels."),
    mask_blur: float = typer.Option(0.0, "--mask-blur", min=0.0, help="Gaussian σ of the mask blur rule (Viviano et al.)."),
    fail_on: list[str] = typer.Option([], "--fail-on", help="Fail (exit 1) when this holds, e.g. 'methods.gradient.artefact.enrichment.overall > 2' (repeatable)."),
    allow_missing: Optional[bool] = typer.Option(None, "--allow-missing/--no-allow-missing", help="A check on a null metric is skipped instead of failing."),
    config: Optional[Path] = typer.Option(None, "--config", help="Gate config (default: audit.toml or [tool.audit] in pyproject.toml here)."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write the gate checks as JUnit XML."),
    report: Optional[Path] = typer.Option(None, "--report", help="PDF report path (default OUT/report.pdf)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
    json_out: bool = typer.Option(False, "--json", help="Print results.json to stdout, everything else to stderr."),
) -> None:
    """Audit a classifier on a dataset: predictions, saliency maps and their metrics."""
    from audit.cli.summary import print_summary
    from audit.data.compatibility import check_classes
    from audit.data.dataset import open_dataset
    from audit.errors import AuditError
    from audit.models.loader import load_classifier
    from audit.pipeline import RunConfig, run_audit
    from audit.report.gate import evaluate_gate, gate_checks, validate_expressions, write_junit
    from audit.report.gate.expressions import Group
    from audit.report.pdf import write_report
    from audit.report.output_folder import OutputFolder
    from audit.report.results_file import dumps, write_results

    err = Console(stderr=True)
    shown = Console(stderr=json_out)
    expressions, allow = gate_checks(fail_on, config, Path.cwd(), allow_missing)
    chosen = list(dict.fromkeys([*method, *(["latentshift-max"] if counterfactuals else [])]))
    per_method = with_autoencoder(method_options(option, chosen), chosen, autoencoder)
    validate_expressions(expressions, groups={"methods": Group("method", "--method", chosen)})
    options = model_options(input_size, channels, mean, std, value_range_text, multilabel, class_names)
    with OutputFolder(out, "results.json", reserved=RUN_OUTPUTS, inputs=(model, data, masks, regions, config, autoencoder)) as folder:
        report_path = folder.destination(report, "report.pdf", "--report")
        junit_path = None if junit is None else folder.destination(junit, "junit.xml", "--junit")
        if junit_path is not None and junit_path.resolve() == report_path.resolve():
            raise AuditError(f"--junit {junit}: is also the --report path; give two different files")
        classifier = load_classifier(model, options)
        if not quiet and classifier.format == "onnx":
            err.print(f"onnxruntime provider: {classifier.provider}", highlight=False)
        dataset = open_dataset(
            data,
            size=(classifier.spec.height, classifier.spec.width),
            channels=classifier.spec.channels,
            masks=masks,
            regions=regions,
            mask_blur=mask_blur,
            mask_dilate=mask_dilate,
            strict=strict,
        )
        check_classes(classifier, dataset, data, options.class_names)
        folder.protect(dataset.base / relative for relative, _ in dataset.entries)
        if options.class_names is None and len(dataset.classes) == classifier.num_classes:
            classifier.class_names = list(dataset.classes)
        run_config = RunConfig(
            methods=chosen,
            method_options=per_method,
            target=target,
            batch_size=batch_size,
            seed=seed,
            randomization_images=randomization_images,
            command=shlex.join(["audit", *sys.argv[1:]]),
        )
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=quiet,
            transient=True,
        ) as progress:
            task = progress.add_task("auditing", total=len(dataset))
            results = run_audit(classifier, dataset, run_config, folder.staging, on_batch=lambda n: progress.advance(task, n))
        if expressions:
            results["gate"] = evaluate_gate(results, expressions, allow)
        if junit_path is not None:
            write_junit(results.get("gate", {"checks": [], "passed": True, "allow_missing": allow}), junit_path)
        write_report(results, folder.staging, report_path)
        folder.publish(results, write_results)
    for warning in results["warnings"]:
        err.print(f"audit: warning: {warning}", highlight=False, markup=False, soft_wrap=True)
    if json_out:
        sys.stdout.write(dumps(results) + "\n")
    if not quiet:
        print_summary(shown, results, out, folder.published(report_path))
    if expressions and not results["gate"]["passed"]:
        raise typer.Exit(1)


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
