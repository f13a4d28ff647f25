"""``audit run``: stream a dataset through model → saliency → metrics, keeping per-image numbers only.

Per batch: normalise, forward (fast path), pick the target class, compute each method's maps,
update each method's streaming metrics, append per-image rows, drop the maps. Memory is
bounded by the batch size, the per-image scalars and a fixed number of kept example maps.
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
from audit.data.batch import Batch
from audit.data.prefetch import prefetch
from audit.errors import AuditError
from audit.metrics.performance import Performance
from audit.models.classifier import Classifier
from audit.metrics.base import MapBatch
from audit.metrics.enrichment import saliency_share
from audit.metrics.suite import MethodMetrics
from audit.report.examples import ExampleKeeper
from audit.report.per_image import PerImageWriter
from audit.report.results_file import SCHEMA, write_results
from audit.saliency import methods
from audit.saliency.base import SaliencyMethod


@dataclass
class RunConfig:
    methods: list[str]
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    target: str = "predicted"  # "predicted", "label" or a class index
    batch_size: int = 32
    seed: int = 0
    command: str = ""
    examples: int = 8  # example maps kept per group and method for the report


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
        options = dict(config.method_options.get(name, {}))
        try:
            built[name] = cls(**options)
        except TypeError as exc:
            raise AuditError(f"method {name!r}: bad option ({exc}); see `audit run --help`") from exc
        if not cls.forward_only:
            classifier.differentiable  # noqa: B018  (builds and verifies the twin now)
    return built


def resolve_target(target: str, classifier: Classifier, batch: Batch, predictions: np.ndarray) -> np.ndarray:
    if target == "predicted":
        return predictions
    if target == "label":
        unknown = [path for path, label in zip(batch.paths, batch.labels) if label < 0]
        if unknown:
            raise AuditError(f"{unknown[0]}: --target label needs a label for every image; use --target predicted")
        return batch.labels.astype(np.int64)
    index = int(target)
    return np.full(len(batch), index, dtype=np.int64)


def check_target_option(target: str, classifier: Classifier) -> None:
    if target in ("predicted", "label"):
        return
    if not target.lstrip("-").isdigit() or not 0 <= int(target) < classifier.num_classes:
        raise AuditError(
            f"--target {target!r}: use predicted, label or a class index 0..{classifier.num_classes - 1}"
        )


def run_audit(
    classifier: Classifier,
    dataset: Any,
    config: RunConfig,
    out_dir: Path,
    on_batch: Callable[[int], None] = lambda n: None,
) -> dict[str, Any]:
    """Run the audit and write ``out_dir/per_image.csv`` and ``out_dir/results.json``."""
    seed_everything(config.seed)
    check_target_option(config.target, classifier)
    built = build_methods(classifier, config)
    out_dir.mkdir(parents=True, exist_ok=True)
    performance = Performance()
    has_artefact: list[np.ndarray] = []
    spec = classifier.spec
    suites = {name: MethodMetrics(classifier.class_names) for name in built}
    keepers = {name: ExampleKeeper(classifier.num_classes, (spec.height, spec.width), config.examples) for name in built}
    writer = PerImageWriter(out_dir)
    try:
        for batch in prefetch(dataset.batches(config.batch_size)):
            x = classifier.spec.to_tensor(batch.images)
            logits = classifier.logits(x)
            bad = ~torch.isfinite(logits).all(dim=1)
            if bool(bad.any()):
                first = batch.paths[int(torch.nonzero(bad)[0])]
                raise AuditError(
                    f"{classifier.path}: output is NaN or infinite for image {first}; check --mean, --std "
                    f"and --value-range, or the model itself"
                )
            probabilities = classifier.probabilities(logits).numpy()
            predictions = probabilities.argmax(axis=1)
            target = torch.from_numpy(resolve_target(config.target, classifier, batch, predictions))
            for name, method in built.items():
                maps = attribute(method, classifier, x, target)
                if not np.isfinite(maps).all():
                    raise AuditError(f"method {name!r} produced NaN maps for a batch starting at {batch.paths[0]}")
                suites[name].update(_map_batch(batch, predictions, probabilities, maps))
                keepers[name].update(batch, maps, predictions, artefact_scores(batch, maps))
            performance.update(batch.labels, probabilities)
            has_artefact.append(batch.has_artefact)
            writer.append(_rows(batch, predictions, probabilities))
            on_batch(len(batch))
        if len(performance.arrays()[0]) == 0:
            reasons = "; ".join(f"{s.path}: {s.reason}" for s in dataset.skipped[:3])
            raise AuditError(f"{dataset.base}: no image could be read ({reasons}); fix the images or point --data elsewhere")
        writer.finish({f"{name}.{column}": values for name, suite in suites.items() for column, values in suite.per_image().items()})
    finally:
        writer.close()
    for name, keeper in keepers.items():
        keeper.save(out_dir / "maps" / f"{name}.npz")
    results = _results(classifier, dataset, config, performance, np.concatenate(has_artefact), built, suites)
    write_results(results, out_dir / "results.json")
    return results


def attribute(method: SaliencyMethod, classifier: Classifier, x: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """The method's maps, in chunks of ``classifier.batch_limit`` images for fixed-batch models."""
    step = classifier.batch_limit or len(x)
    if step >= len(x):
        return method.attribute(classifier, x, target)
    return np.concatenate([method.attribute(classifier, x[i : i + step], target[i : i + step]) for i in range(0, len(x), step)])


def artefact_scores(batch: Batch, maps: np.ndarray) -> np.ndarray:
    """Per image: share of |map| on the artefact over the artefact's area share (NaN without one)."""
    scores = np.full(len(batch), np.nan)
    for i in np.flatnonzero(batch.has_artefact):
        area = batch.artefact[i].mean()
        if area > 0:
            scores[i] = saliency_share(maps[i], batch.artefact[i]) / area
    return scores


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


def _rows(batch: Batch, predictions: np.ndarray, probabilities: np.ndarray):
    for i, path in enumerate(batch.paths):
        label = int(batch.labels[i])
        yield (
            path,
            label if label >= 0 else "",
            int(predictions[i]),
            round(float(probabilities[i, predictions[i]]), 6),
            int(predictions[i] == label) if label >= 0 else "",
            int(batch.artefact[i].sum()),
            int(batch.region[i].sum()),
        )


def _results(
    classifier: Classifier,
    dataset: Any,
    config: RunConfig,
    performance: Performance,
    has_artefact: np.ndarray,
    built: dict[str, SaliencyMethod],
    suites: dict[str, MethodMetrics],
) -> dict[str, Any]:
    overall = performance.compute()
    spec = classifier.spec
    report = dataset.mask_report
    return {
        "schema": SCHEMA,
        "tool": {"name": "audit", "version": audit.__version__},
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": config.command,
        "seed": config.seed,
        "target": config.target,
        "model": {
            "path": str(classifier.path),
            "format": classifier.format,
            "sha256": classifier.sha256,
            "provider": classifier.provider,
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
            "root": str(dataset.base),
            "classes": dataset.classes,
            "images": int(len(has_artefact)),
            "with_artefact": report.with_artefact,
            "with_region": report.with_region,
            "masks_resized": report.resized,
            "masks_unreadable": [{"path": s.path, "reason": s.reason} for s in report.unreadable],
            "skipped": [{"path": s.path, "reason": s.reason} for s in dataset.skipped],
        },
        "performance": {
            "accuracy": overall["accuracy"],
            "auc": overall["auc"],
            "n": overall["n"],
            **({"reason": overall["auc_reason"]} if "auc_reason" in overall else {}),
        },
        "methods": {
            name: {"options": config.method_options.get(name, {}), "signed": method.signed, **suites[name].compute()}
            for name, method in built.items()
        },
    }
