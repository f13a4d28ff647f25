"""``audit run``: stream a dataset through model → saliency → metrics, keeping per-image numbers only.

The run is split in three: ``stream_run`` streams the dataset (or, with ``config.shard``, the
shard's contiguous range of its listing) and returns a ``RunState``; states of contiguous parts
merge (``RunState.merge``); ``finish_run`` writes per_image.csv, the example maps and
results.json from a state, without the model (which only Latent Shift strips need).
``run_audit`` is the two in a row.

Per batch: normalise, forward, resolve the explained class (``audit.target``), compute each
method's maps for it, ablate the artefact and the region (the ablation stage: forward passes
only, per-image columns), update the metrics, append per-image rows, drop the maps. After the
stream, the randomisation stage reads the images it checks itself (``audit.stages
.randomisation``: chosen by a hash of their path over the whole listing, so every shard would
choose the same; only shard 1 of a sharded run runs it). Memory is bounded by the batch size,
per-image scalars and a fixed number of kept example maps.

When a method's map is a function of the target logit's input gradient (gradient,
input-x-gradient), the forward pass that gives the predictions runs on the differentiable
model and the gradient is taken from it: one forward and one backward per batch, shared by
those methods. Predictions then come from the differentiable twin, which matches the
forward-only path within 1e-4 (checked when it is built).
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from audit.cost import run_cost
from audit.counterfactual.strips import STRIPS, latentshift_method, save_strips
from audit.data.batch import Batch
from audit.data.loading import stream_batches
from audit.device import describe, in_halves, is_out_of_memory, out_of_memory_error, precision_context
from audit.errors import AuditError
from audit.metrics.base import ImageColumns, MapBatch
from audit.metrics.chance import chance_warnings
from audit.metrics.randomisation import sanity
from audit.metrics.run_state import MethodState, RunState
from audit.metrics.subsets import artefact_present
from audit.metrics.tensors import Maps, all_finite
from audit.models.classifier import Classifier
from audit.progress import SILENT, Phases
from audit.report.finding import finding
from audit.report.per_image import PerImageWriter, write_per_image
from audit.report.results_file import SCHEMA, dumps, header, write_results
from audit.saliency import methods
from audit.saliency.base import SaliencyMethod, network
from audit.shards import shard_range
from audit.stages.ablation import ablation_columns
from audit.stages.randomisation import choose_images, randomisation_records, randomisation_steps
from audit.target import Target


@dataclass
class RunConfig:
    methods: list[str]
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    target: str = "predicted"  # "predicted", "label" or a class index
    batch_size: int = 32
    seed: int = 0
    command: str = ""
    examples: int = 8  # example maps kept per group and method for the report
    randomization_images: int = 32  # 0 skips the randomisation check
    device: str = "auto"  # auto, cpu, cuda or cuda:N (``audit.device``)
    precision: str = "fp32"  # fp32, bf16 or fp16 for the forward and backward passes
    workers: int | None = None  # decode/resize worker processes; None: cores − 1, bounded
    shard: tuple[int, int] | None = None  # (I, N), 1 <= I <= N: audit only the I-th of N ranges


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_methods(classifier: Classifier, config: RunConfig) -> dict[str, SaliencyMethod]:
    """Instantiate the methods; build the differentiable twin up front if any method needs it,
    so that an unsupported operator fails before any image is processed."""
    built: dict[str, SaliencyMethod] = {}
    for name in config.methods:
        cls = methods.get(name)
        try:
            built[name] = cls(**config.method_options.get(name, {}))
        except TypeError as exc:
            raise AuditError(f"method {name!r}: bad option ({exc}); see `audit run --help`") from exc
        if not cls.forward_only:
            network(classifier, cls)  # builds and verifies the twin now
        built[name].prepare(classifier)  # e.g. Grad-CAM's layer, checked before any image
    return built


def attribute(method: SaliencyMethod, classifier: Classifier, x: torch.Tensor, target: torch.Tensor) -> Maps:
    """The method's maps (a tensor on x's device for the built-in methods, numpy from some
    plugins), in chunks of ``classifier.batch_limit`` images for fixed-batch models, in halves
    of the batch where CUDA runs out of memory (``audit.device.in_halves``)."""
    return in_halves(lambda part: method.attribute(classifier, x[part], target[part]), len(x), step=classifier.batch_limit)


class SharedGradient:
    """One forward pass on the differentiable model whose logits give the predictions and
    whose graph gives ∂y_t/∂x for every ``uses_input_gradient`` method."""

    def __init__(self, classifier: Classifier, x: torch.Tensor) -> None:
        self.x = x.detach().requires_grad_(True)  # a view: x itself stays without grad
        with torch.enable_grad():
            self._logits = classifier.differentiable(self.x)
        self.logits = self._logits.detach().float()  # float32 under --precision bf16/fp16 too

    def gradient(self, target: torch.Tensor) -> torch.Tensor:
        chosen = self._logits.gather(1, target[:, None]).sum()
        return torch.autograd.grad(chosen, self.x)[0]


def stream_run(
    classifier: Classifier,
    dataset: Any,
    config: RunConfig,
    out_dir: Path,
    phases: Phases = SILENT,
    on_start: Callable[[dict[str, Any]], None] | None = None,
) -> RunState:
    """Stream the dataset (only ``config.shard``'s range of its listing when set), writing the
    base rows of ``out_dir/per_image.partial.csv``; returns the accumulated state. Progress goes
    to ``phases`` ("auditing", then "randomisation check"); ``on_start`` gets
    ``results_outline`` before the first image is read (the gate checks its keys)."""
    seed_everything(config.seed)
    target_rule = Target.parse(config.target, classifier.num_classes)
    built = build_methods(classifier, config)
    share_gradient = any(method.uses_input_gradient for method in built.values())
    out_dir.mkdir(parents=True, exist_ok=True)
    state = RunState(_meta(classifier, dataset, config, built))
    if on_start is not None:
        on_start(results_outline(state))
    part = _shard(dataset, config.shard, config.batch_size)
    _announce_cost(classifier, built, len(part) if part is not None else 0, config, phases)
    writer = PerImageWriter(out_dir)
    try:
        with precision_context(classifier.device, config.precision):  # autocast for --precision bf16/fp16
            pin = classifier.device.type == "cuda"
            batches = stream_batches(part, config.batch_size, workers=config.workers, pin_memory=pin) if part is not None else ()
            phases.start("auditing", len(part) if part is not None else 0)
            for batch in batches:
                record, mapped = _model_work(classifier, built, target_rule, batch, share_gradient)
                _accumulate(state, batch, record, mapped)
                writer.append(_rows(batch, record["predictions"], record["targets"], record["probabilities"]))
                phases.advance(len(batch))
            if part is not None:
                state.data.record_pass(part)
            state.meta["csv"] = [str(writer.partial)]
            if config.shard is None or config.shard[0] == 1:
                _randomisation_stage(classifier, dataset, config, target_rule, built, state, phases)
    except Exception as exc:  # CUDA out of memory outside the halving (audit.device)
        if is_out_of_memory(exc):
            raise out_of_memory_error(config.batch_size) from exc
        raise
    finally:
        writer.close()
    return state


def _announce_cost(classifier: Classifier, built: dict[str, SaliencyMethod], images: int, config: RunConfig,
                   phases: Phases) -> None:
    """Say, before the first image, when the run is expensive (``audit.cost``)."""
    checked = config.randomization_images if config.shard is None or config.shard[0] == 1 else 0
    try:
        layers = len(classifier.layer_names()) if checked else 0
    except AuditError:  # no layered model: the check will say why it did not run
        layers = 0
    line = run_cost(built, classifier.spec.shape, images, checked, layers).warning()
    if line:
        phases.note(line)


def _shard(dataset: Any, shard: tuple[int, int] | None, batch: int) -> Any:
    """The dataset restricted to the shard's contiguous range of its listing, cut at batch
    boundaries (itself without a shard; None for an empty range: more shards than batches)."""
    if shard is None:
        return dataset
    chosen = shard_range(len(dataset.entries), *shard, batch)
    return dataclasses.replace(dataset, entries=dataset.entries[chosen.start : chosen.stop]) if chosen else None


def _model_work(classifier: Classifier, built: dict[str, SaliencyMethod], target_rule: Target, batch: Batch,
                share_gradient: bool) -> tuple[ImageColumns, dict[str, MapBatch]]:
    """Everything the model computes for one batch (forward, explained classes, ablation stage,
    each method's maps), touching no state, so that it can be retried: the per-image record and
    the maps by method."""
    x = classifier.to_input(batch.images)
    shared = SharedGradient(classifier, x) if share_gradient else None
    logits = shared.logits if shared else classifier.logits(x)
    _check_finite(classifier, batch, logits)
    probabilities = classifier.probabilities(logits).cpu().numpy()
    predictions = probabilities.argmax(axis=1)
    classes = target_rule.resolve(batch.paths, batch.labels, predictions)
    target = torch.from_numpy(classes).to(x.device)
    gradient = shared.gradient(target) if shared else None
    record = ImageColumns(batch.paths, {
        "labels": batch.labels, "predictions": predictions, "targets": classes, "probabilities": probabilities,
        "logits": logits.cpu().numpy(), "artefact_present": artefact_present(batch),
        **ablation_columns(batch, classifier, probabilities, classes)})
    mapped = {}
    for name, method in built.items():
        maps = _maps(method, classifier, x, target, gradient)
        if not all_finite(maps):
            raise AuditError(f"{classifier.path}: method {name!r} gives NaN or infinite saliency for the batch "
                             f"starting at {batch.paths[0]}; check --mean, --std and --value-range, or use "
                             f"--method occlusion")
        mapped[name] = _map_batch(batch, predictions, probabilities[np.arange(len(batch)), classes], maps)
    return record, mapped


def _accumulate(state: RunState, batch: Batch, record: ImageColumns, mapped: dict[str, MapBatch]) -> None:
    """The batch's record and maps into the metrics (their kernels run where the maps are;
    only per-image values and the kept examples reach the host)."""
    state.update(record)
    for name, maps in mapped.items():
        method_state = state.methods[name]
        scores = method_state.metrics.update(maps)
        method_state.examples.update(maps, batch.images, scores)
        method_state.intervention.update(ImageColumns(batch.paths, {"saliency": scores, "drop": -record["artefact_delta"]}))


def _maps(method: SaliencyMethod, classifier: Classifier, x: torch.Tensor, target: torch.Tensor, gradient: torch.Tensor | None) -> Maps:
    if gradient is not None and method.uses_input_gradient:
        return method.from_input_gradient(x, gradient)
    return attribute(method, classifier, x, target)


def _randomisation_stage(classifier: Classifier, dataset: Any, config: RunConfig, target_rule: Target,
                         built: dict[str, SaliencyMethod], state: RunState, phases: Phases = SILENT) -> None:
    """The randomisation check of every method on the chosen images (``choose_images``), with
    their classes by ``--target`` from a forward pass of them; a failure is recorded as the reason."""
    checks = {name: state.methods[name].randomisation for name in built}
    if not config.randomization_images:
        for check in checks.values():
            check.skip("skipped (--randomization-images 0)")
        return
    try:
        batch = choose_images(dataset, config.randomization_images)
        x = classifier.to_input(batch.images)
        predictions = classifier.probabilities(classifier.logits(x)).cpu().numpy().argmax(axis=1)
        target = torch.from_numpy(target_rule.resolve(batch.paths, batch.labels, predictions)).to(x.device)
    except AuditError as exc:
        for check in checks.values():
            check.skip(f"the check failed to run: {exc}")
        return
    phases.start("randomisation check", sum(_steps(classifier, method, x) for method in built.values()))
    for name, method in built.items():
        try:
            checks[name].update(randomisation_records(classifier, method, x, target, paths=batch.paths, name=name,
                                                      seed=config.seed, on_step=phases.advance))
        except AuditError as exc:
            checks[name].skip(f"the check failed to run: {exc}")


def _steps(classifier: Classifier, method: SaliencyMethod, x: torch.Tensor) -> int:
    """``randomisation_steps`` for the progress bar; 0 where the method's check cannot run (it
    is then recorded as not run, with the reason)."""
    try:
        return randomisation_steps(classifier, method, x)
    except AuditError:
        return 0


def results_outline(state: RunState) -> dict[str, Any]:
    """results.json of ``state``'s run as it is before any image: every key a run with these
    model, data and options writes, its values null where the data decides them (with the
    ``finding``). The gate checks its keys against it before the first image is read."""
    outline = _results(state)
    outline["finding"] = finding(outline)
    return outline


def finish_run(state: RunState, out_dir: Path, classifier: Classifier | None = None, phases: Phases = SILENT) -> dict[str, Any]:
    """Write ``out_dir/per_image.csv`` (the base rows of the state's partial CSV files, in order,
    and the metric columns of the state), ``out_dir/maps/*.npz`` and ``out_dir/results.json``.
    ``classifier`` is needed only for Latent Shift strips."""
    config = state.meta["config"]
    if not state.data.paths:
        reasons = "; ".join(f"{path}: {reason}" for path, reason in state.data.skipped[:3])
        raise AuditError(f"{state.meta['data']['root']}: no image could be read ({reasons}); fix the images or point --data elsewhere")
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = dict(state.ablation.per_image())
    for name, method_state in state.methods.items():
        columns.update({f"{name}.{column}": values for column, values in method_state.metrics.per_image().items()})
    write_per_image([Path(p) for p in state.meta["csv"]], state.data.paths, columns, out_dir / "per_image.csv")
    for name, method_state in state.methods.items():
        method_state.examples.save(out_dir / "maps" / f"{name}.npz")
    if shifted := latentshift_method(config["methods"]):
        if classifier is None:
            raise AuditError(f"{shifted}: Latent Shift strips need the model; give it to finish the run")
        phases.start("counterfactual strips", None)
        save_strips(classifier, config["method_options"].get(shifted, {}), out_dir / "maps" / f"{shifted}.npz",
                    out_dir / STRIPS, target=state.target)
    results = _results(state)
    results["finding"] = finding(results)
    write_results(results, out_dir / "results.json")
    return results


def run_audit(
    classifier: Classifier,
    dataset: Any,
    config: RunConfig,
    out_dir: Path,
    phases: Phases = SILENT,
    on_start: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the audit and write ``out_dir/per_image.csv``, ``out_dir/maps/*.npz`` and ``out_dir/results.json``."""
    return finish_run(stream_run(classifier, dataset, config, out_dir, phases, on_start), out_dir, classifier, phases)


def _check_finite(classifier: Classifier, batch: Batch, logits: torch.Tensor) -> None:
    bad = ~torch.isfinite(logits).all(dim=1)
    if bool(bad.any()):
        first = batch.paths[int(torch.nonzero(bad)[0])]
        raise AuditError(
            f"{classifier.path}: output is NaN or infinite for image {first}; check --mean, --std "
            f"and --value-range, or the model itself"
        )


def _map_batch(batch: Batch, predictions: np.ndarray, explained: np.ndarray, maps: Maps) -> MapBatch:
    """``explained``: (N,) probability of each image's explained class."""
    return MapBatch.from_predictions(
        paths=batch.paths,
        labels=batch.labels,
        predictions=predictions,
        probabilities=explained,
        maps=maps,
        artefact=batch.artefact,
        region=batch.region,
        has_artefact=batch.has_artefact,
        has_region=batch.has_region,
    )


def _rows(batch: Batch, predictions: np.ndarray, targets: np.ndarray, probabilities: np.ndarray):
    for i, path in enumerate(batch.paths):
        label = int(batch.labels[i])
        yield (
            path,
            label if label >= 0 else "",
            int(predictions[i]),
            int(targets[i]),
            round(float(probabilities[i, predictions[i]]), 6),
            int(predictions[i] == label) if label >= 0 else "",
            int(batch.artefact[i].sum()),
            int(batch.region[i].sum()),
        )


def _meta(classifier: Classifier, dataset: Any, config: RunConfig, built: dict[str, SaliencyMethod]) -> dict[str, Any]:
    """What results.json needs of the model, the dataset and the options, as JSON gives it back
    (tuples as lists), so that a live state and a loaded one compare equal."""
    spec = classifier.spec
    meta = {
        "model": {
            "path": str(classifier.path),
            "format": classifier.format,
            "sha256": classifier.sha256,
            "files": classifier.files,
            "provider": classifier.provider,
            "twin_check": classifier.twin_check,
            "classes": classifier.class_names,
            "multilabel": classifier.multilabel,
            "input": {
                "channels": spec.channels,
                "height": spec.height,
                "width": spec.width,
                "mean": list(spec.mean),
                "std": list(spec.std),
                "value_range": list(spec.value_range),
                "source": spec.source,
            },
        },
        "data": {"root": dataset.root, "classes": dataset.classes},
        "run": describe(classifier.device, config.precision),
        "config": {**dataclasses.asdict(config), "shard": list(config.shard) if config.shard else None},
        "class_names": list(classifier.class_names),
        "shape": [spec.height, spec.width],
        "methods": {name: {"signed": method.signed, **method.provenance()} for name, method in built.items()},
        "csv": [],
    }
    return json.loads(dumps(meta))


def _method_results(name: str, state: MethodState, meta: dict[str, Any]) -> dict[str, Any]:
    randomization = state.randomisation.compute()
    return {
        "options": meta["config"]["method_options"].get(name, {}),
        **meta["methods"][name],
        **state.metrics.compute(),
        "randomization": randomization,
        "sanity": sanity(randomization),
        "saliency_vs_ablation": state.intervention.compute(),
    }


def _results(state: RunState) -> dict[str, Any]:
    meta, config = state.meta, state.meta["config"]
    model = meta["model"]
    ablated = state.ablation.compute()
    performance = state.performance.compute()
    return {
        **header(SCHEMA, config["command"], meta["run"]),
        "seed": config["seed"],
        "target": str(state.target),
        "explained": state.explained.compute(),
        "model": model,
        "data": {**meta["data"], **state.data.compute()},
        "performance": {**performance, "by_artefact": state.subsets.compute()},
        "ablation": {"fill": ablated["fill"], "artefact": ablated["artefact"], "region": ablated["region"]},
        "methods": {name: _method_results(name, method_state, meta) for name, method_state in state.methods.items()},
        "warnings": [*state.outputs.compute(model["multilabel"], len(meta["class_names"]), Path(model["path"])),
                     *chance_warnings(*state.performance.arrays(), performance, meta["class_names"], model["multilabel"],
                                      Path(model["path"]))],
    }
