"""``audit run``: stream a dataset through model → saliency → metrics, keeping per-image numbers only.

Per batch: normalise, forward, resolve the explained class (``audit.target``), compute each
method's maps for it, update the streaming metrics, ablate the artefact and the region (forward
passes only; the change of the explained class's probability), append per-image rows, drop the
maps. Memory is bounded by the batch size, per-image scalars, a fixed number of
kept example maps and the images kept for the randomisation check (``randomization_images``).

When a method's map is a function of the target logit's input gradient (gradient,
input-x-gradient), the forward pass that gives the predictions runs on the differentiable
model and the gradient is taken from it: one forward and one backward per batch, shared by
those methods. Predictions then come from the differentiable twin, which matches the
forward-only path within 1e-4 (checked when it is built).
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import audit
from audit.counterfactual.strips import STRIPS, latentshift_method, save_strips
from audit.data.batch import Batch
from audit.data.loading import stream_batches
from audit.device import in_halves, is_out_of_memory, out_of_memory_error, precision_context
from audit.errors import AuditError
from audit.metrics.ablation import ArtefactAblation
from audit.metrics.base import MapBatch
from audit.metrics.intervention import SaliencyIntervention
from audit.metrics.performance import Performance
from audit.metrics.randomisation import RandomisationCheck, sanity
from audit.metrics.subsets import PerformanceBySubset, artefact_present
from audit.metrics.suite import MethodMetrics
from audit.models.classifier import Classifier
from audit.models.probability_outputs import ProbabilityOutputs
from audit.report.examples import ExampleKeeper
from audit.report.finding import finding
from audit.report.per_image import PerImageWriter
from audit.report.results_file import SCHEMA, write_results
from audit.saliency import methods
from audit.saliency.base import SaliencyMethod, network
from audit.target import ExplainedClasses, Target


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


def attribute(method: SaliencyMethod, classifier: Classifier, x: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """The method's maps, in chunks of ``classifier.batch_limit`` images for fixed-batch models,
    in halves of the batch where CUDA runs out of memory (``audit.device.in_halves``)."""
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


@dataclass
class MethodState:
    """Everything streamed for one saliency method."""

    method: SaliencyMethod
    metrics: MethodMetrics
    examples: ExampleKeeper
    intervention: SaliencyIntervention
    randomisation: RandomisationCheck | None

    def maps(self, classifier: Classifier, x: torch.Tensor, target: torch.Tensor, gradient: torch.Tensor | None) -> np.ndarray:
        if gradient is not None and self.method.uses_input_gradient:
            return self.method.from_input_gradient(x, gradient)
        return attribute(self.method, classifier, x, target)


def run_audit(
    classifier: Classifier,
    dataset: Any,
    config: RunConfig,
    out_dir: Path,
    on_batch: Callable[[int], None] = lambda n: None,
) -> dict[str, Any]:
    """Run the audit and write ``out_dir/per_image.csv``, ``out_dir/maps/*.npz`` and ``out_dir/results.json``."""
    seed_everything(config.seed)
    target_rule = Target.parse(config.target, classifier.num_classes)
    built = build_methods(classifier, config)
    share_gradient = any(method.uses_input_gradient for method in built.values())
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = classifier.spec
    states = {
        name: MethodState(
            method,
            MethodMetrics(classifier.class_names),
            ExampleKeeper(classifier.num_classes, (spec.height, spec.width), config.examples),
            SaliencyIntervention(),
            RandomisationCheck(method, name, images=config.randomization_images, seed=config.seed) if config.randomization_images else None,
        )
        for name, method in built.items()
    }
    performance, subsets, ablation = Performance(), PerformanceBySubset(), ArtefactAblation()
    outputs = ProbabilityOutputs()
    writer = PerImageWriter(out_dir)
    images = 0
    explained = ExplainedClasses(target_rule, classifier.class_names)
    try:
        with precision_context(classifier.device, config.precision):  # autocast for --precision bf16/fp16
            for batch in stream_batches(dataset, config.batch_size, workers=config.workers, pin_memory=classifier.device.type == "cuda"):
                x = classifier.to_input(batch.images)
                shared = SharedGradient(classifier, x) if share_gradient else None
                logits = shared.logits if shared else classifier.logits(x)
                _check_finite(classifier, batch, logits)
                outputs.update(logits)
                probabilities = classifier.probabilities(logits).cpu().numpy()
                predictions = probabilities.argmax(axis=1)
                classes = target_rule.resolve(batch.paths, batch.labels, predictions)
                target = torch.from_numpy(classes).to(x.device)
                gradient = shared.gradient(target) if shared else None
                ablated = ablation.update(batch, classifier, probabilities, classes)
                for name, state in states.items():
                    maps = state.maps(classifier, x, target, gradient)
                    if not np.isfinite(maps).all():
                        raise AuditError(f"{classifier.path}: method {name!r} gives NaN or infinite saliency for the batch "
                                         f"starting at {batch.paths[0]}; check --mean, --std and --value-range, or use "
                                         f"--method occlusion")
                    scores = state.metrics.update(_map_batch(batch, predictions, probabilities, maps))
                    state.examples.update(batch, maps, predictions, scores)
                    state.intervention.update(scores, -ablated.artefact_delta)
                    if state.randomisation is not None:
                        state.randomisation.update(x, target)
                performance.update(batch.labels, probabilities)
                subsets.update(batch.labels, probabilities, artefact_present(batch))
                writer.append(_rows(batch, predictions, classes, probabilities))
                explained.update(classes, predictions)
                images += len(batch)
                on_batch(len(batch))
        if images == 0:
            reasons = "; ".join(f"{s.path}: {s.reason}" for s in dataset.skipped[:3])
            raise AuditError(f"{dataset.base}: no image could be read ({reasons}); fix the images or point --data elsewhere")
        columns = dict(ablation.per_image())
        for name, state in states.items():
            columns.update({f"{name}.{column}": values for column, values in state.metrics.per_image().items()})
        writer.finish(columns)
    except Exception as exc:  # CUDA out of memory outside the halving (audit.device)
        if is_out_of_memory(exc):
            raise out_of_memory_error(config.batch_size) from exc
        raise
    finally:
        writer.close()
    for name, state in states.items():
        state.examples.save(out_dir / "maps" / f"{name}.npz")
    if shifted := latentshift_method(config.methods):
        save_strips(classifier, config.method_options.get(shifted, {}), out_dir / "maps" / f"{shifted}.npz", out_dir / STRIPS, target=target_rule)
    results = _results(classifier, dataset, config, images, performance, subsets, ablation, states, explained)
    results["warnings"] = outputs.compute(classifier.multilabel, classifier.num_classes, classifier.path)
    results["finding"] = finding(results)
    write_results(results, out_dir / "results.json")
    return results


def _check_finite(classifier: Classifier, batch: Batch, logits: torch.Tensor) -> None:
    bad = ~torch.isfinite(logits).all(dim=1)
    if bool(bad.any()):
        first = batch.paths[int(torch.nonzero(bad)[0])]
        raise AuditError(
            f"{classifier.path}: output is NaN or infinite for image {first}; check --mean, --std "
            f"and --value-range, or the model itself"
        )


def _map_batch(batch: Batch, predictions: np.ndarray, probabilities: np.ndarray, maps: np.ndarray) -> MapBatch:
    return MapBatch.from_predictions(
        paths=batch.paths,
        labels=batch.labels,
        predictions=predictions,
        probabilities=probabilities[np.arange(len(batch)), predictions],
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


def _randomization(state: MethodState, classifier: Classifier) -> dict[str, Any]:
    if state.randomisation is None:
        return {"cascading": None, "independent": None, "reason": "skipped (--randomization-images 0)"}
    try:
        return state.randomisation.compute(classifier)
    except AuditError as exc:
        return {"cascading": None, "independent": None, "reason": f"the check failed to run: {exc}"}


def _method_results(name: str, state: MethodState, classifier: Classifier, config: RunConfig) -> dict[str, Any]:
    randomization = _randomization(state, classifier)
    return {
        "options": config.method_options.get(name, {}),
        "signed": state.method.signed,
        **state.method.provenance(),
        **state.metrics.compute(),
        "randomization": randomization,
        "sanity": sanity(randomization),
        "saliency_vs_ablation": state.intervention.compute(),
    }


def _results(
    classifier: Classifier,
    dataset: Any,
    config: RunConfig,
    images: int,
    performance: Performance,
    subsets: PerformanceBySubset,
    ablation: ArtefactAblation,
    states: dict[str, MethodState],
    explained: ExplainedClasses,
) -> dict[str, Any]:
    spec = classifier.spec
    report = dataset.mask_report
    ablated = ablation.compute()
    return {
        "schema": SCHEMA,
        "tool": {"name": "audit", "version": audit.__version__},
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": config.command,
        "seed": config.seed,
        "target": str(explained.target),
        "explained": explained.compute(),
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
            },
        },
        "data": {
            "root": dataset.root,
            "classes": dataset.classes,
            "images": images,
            "with_artefact": report.with_artefact,
            "with_region": report.with_region,
            "masks_resized": report.resized,
            "masks_unreadable": [{"path": s.path, "reason": s.reason} for s in report.unreadable],
            "skipped": [{"path": s.path, "reason": s.reason} for s in dataset.skipped],
        },
        "performance": {**performance.compute(), "by_artefact": subsets.compute()},
        "ablation": {"fill": ablated["fill"], "artefact": ablated["artefact"], "region": ablated["region"]},
        "methods": {name: _method_results(name, state, classifier, config) for name, state in states.items()},
    }
