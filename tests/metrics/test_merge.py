"""Merged metric states equal one pass over the same images: every metric, split into 2 and 3
contiguous parts of a real run's batches (the biased sample model's gradient maps on synthetic
data), merged in order, gives per-image columns identical to the one pass and summaries within
1e-9 relative; states survive a JSON + npz round trip; a merge never counts an image twice."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from audit.data.dataset import open_dataset
from audit.errors import AuditError
from audit.metrics.ablation import ArtefactAblation
from audit.metrics.aurrac import Aurrac
from audit.metrics.base import ImageColumns, MapBatch
from audit.metrics.enrichment import ArtefactEnrichment
from audit.metrics.global_saliency import GlobalSaliency
from audit.metrics.intervention import SaliencyIntervention
from audit.metrics.localisation import RegionLocalisation
from audit.metrics.performance import Performance
from audit.metrics.pointwise_detection import PointwiseDetection
from audit.metrics.run_state import DataCounts, join_arrays, split_arrays
from audit.metrics.running import RunningMoments
from audit.metrics.subsets import PerformanceBySubset, artefact_present
from audit.metrics.suite import MethodMetrics
from audit.models.loader import load_classifier
from audit.models.probability_outputs import ProbabilityOutputs
from audit.report.examples import ExampleKeeper
from audit.saliency import methods
from audit.stages.ablation import ablation_columns
from audit.target import ExplainedClasses, Target

MODEL = Path(__file__).resolve().parents[2] / "sample_models" / "biased.onnx"


def dataset(root: Path):
    valid = root / "valid"
    return open_dataset(valid / "images", size=(28, 28), channels=1, masks=valid / "artefacts", regions=valid / "regions")


@pytest.fixture(scope="module")
def stream(synthetic_root: Path) -> list[dict[str, Any]]:
    """Per batch of 4 (24 images): the MapBatch of gradient maps, the images, the per-image record."""
    torch.set_num_threads(1)
    classifier = load_classifier(MODEL)
    gradient = methods.get("gradient")()
    batches = []
    for batch in dataset(synthetic_root).batches(4):
        x = classifier.to_input(batch.images)
        logits = classifier.logits(x)
        probabilities = classifier.probabilities(logits).numpy()
        predictions = probabilities.argmax(axis=1)
        maps = gradient.attribute(classifier, x, torch.from_numpy(predictions))
        mapped = MapBatch.from_predictions(batch.paths, batch.labels, predictions, probabilities.max(axis=1), maps,
                                           batch.artefact, batch.region, batch.has_artefact, batch.has_region)
        ablated = ablation_columns(batch, classifier, probabilities, predictions)
        record = ImageColumns(batch.paths, {
            "labels": batch.labels, "predictions": predictions, "targets": predictions, "probabilities": probabilities,
            "logits": logits.numpy(), "artefact_present": artefact_present(batch), **ablated,
            "saliency": ArtefactEnrichment().update(mapped), "drop": -ablated["artefact_delta"]})
        batches.append({"map": mapped, "images": batch.images, "record": record})
    return batches


def feed_maps(metric: Any, item: dict[str, Any]) -> None:
    metric.update(item["map"])


def feed_record(metric: Any, item: dict[str, Any]) -> None:
    metric.update(item["record"])


def feed_examples(metric: ExampleKeeper, item: dict[str, Any]) -> None:
    metric.update(item["map"], item["images"], ArtefactEnrichment().update(item["map"]))


CASES: dict[str, tuple[Callable[[], Any], Callable[[Any, dict], None]]] = {
    "global_saliency": (GlobalSaliency, feed_maps),
    "global_saliency_absolute": (lambda: GlobalSaliency(absolute=True), feed_maps),
    "enrichment": (ArtefactEnrichment, feed_maps),
    "aurrac": (Aurrac, feed_maps),
    "aurrac_peak": (lambda: Aurrac(score="peak"), feed_maps),
    "localisation": (lambda: RegionLocalisation(blur_sigma=1.0), feed_maps),
    "pointwise_detection": (PointwiseDetection, feed_maps),
    "method_metrics": (lambda: MethodMetrics(["0", "1"]), feed_maps),
    "performance": (Performance, feed_record),
    "subsets": (PerformanceBySubset, feed_record),
    "ablation": (ArtefactAblation, feed_record),
    "intervention": (SaliencyIntervention, feed_record),
    "probability_outputs": (ProbabilityOutputs, feed_record),
    "explained": (lambda: ExplainedClasses(Target.parse("predicted", 2), ["0", "1"]), feed_record),
    "data": (DataCounts, feed_record),
    "examples": (lambda: ExampleKeeper(2, (28, 28), k=3), feed_examples),
}


def outputs(metric: Any) -> tuple[Any, Any]:
    """(summary, per-image columns) of any accumulator, JSON-ready."""
    if isinstance(metric, ExampleKeeper):
        state = metric.state_dict()
        return {k: np.asarray(v).tolist() for k, v in state.items() if k not in ("sums",)}, state["sums"].tolist()
    if isinstance(metric, ProbabilityOutputs):
        return metric.compute(multilabel=False, classes=2, model=MODEL), {}
    per_image = metric.per_image() if hasattr(metric, "per_image") else {}
    return metric.compute(), per_image


def assert_close(mine: Any, theirs: Any, where: str = "") -> None:
    """Equal, except floats within 1e-9 relative (NaN equals NaN)."""
    if isinstance(mine, dict):
        assert set(mine) == set(theirs), where
        for key in mine:
            assert_close(mine[key], theirs[key], f"{where}/{key}")
    elif isinstance(mine, (list, tuple)):
        assert len(mine) == len(theirs), where
        for i, (a, b) in enumerate(zip(mine, theirs)):
            assert_close(a, b, f"{where}[{i}]")
    elif isinstance(mine, float) and isinstance(theirs, float):
        assert (math.isnan(mine) and math.isnan(theirs)) or mine == pytest.approx(theirs, rel=1e-9, abs=1e-300), where
    else:
        assert mine == theirs, where


def run(case: str, items: list[dict[str, Any]]) -> Any:
    make, feed = CASES[case]
    metric = make()
    for item in items:
        feed(metric, item)
    return metric


def round_trip(metric: Any, make: Callable[[], Any]) -> Any:
    """``metric``'s state through JSON and npz (allow_pickle=False) into a fresh metric."""
    arrays: dict[str, np.ndarray] = {}
    text = json.dumps(split_arrays(metric.state_dict(), "", arrays), allow_nan=False)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as npz:
        state = join_arrays(json.loads(text), {key: npz[key] for key in npz.files})
    fresh = make()
    fresh.load_state_dict(state)
    return fresh


@pytest.mark.parametrize("parts", [2, 3])
@pytest.mark.parametrize("case", sorted(CASES))
def test_merged_parts_equal_one_pass(stream, case, parts):
    whole_summary, whole_columns = outputs(run(case, stream))
    bounds = np.linspace(0, len(stream), parts + 1).astype(int)
    states = [round_trip(run(case, stream[a:b]), CASES[case][0]) for a, b in zip(bounds[:-1], bounds[1:])]
    merged = states[0]
    for state in states[1:]:
        merged.merge(state)
    summary, columns = outputs(merged)
    assert json.dumps(columns) == json.dumps(whole_columns)  # per image: identical
    assert_close(summary, whole_summary)


@pytest.mark.parametrize("case", sorted(set(CASES) - {"probability_outputs", "explained", "examples"}))
def test_a_path_seen_twice_is_refused(stream, case):
    """Every metric with per-image lists (the others are counts, or a bounded subset: RunState
    refuses the path by its data paths)."""
    first, second = run(case, stream[:2]), run(case, stream[1:3])
    with pytest.raises(AuditError, match=r"image .* is in two of the merged states"):
        first.merge(second)


def test_an_empty_state_round_trips_and_merges(stream):
    for case, (make, _) in CASES.items():
        empty = round_trip(make(), make)
        full = run(case, stream)
        empty.merge(full)
        assert json.dumps(outputs(empty), default=str) == json.dumps(outputs(full), default=str), case


@pytest.mark.parametrize("split", [1, 2, 5, 50])
def test_running_moments_merge_matches_numpy(split):
    values = np.random.default_rng(split).normal(1e3, 3.0, size=101)
    a, b = values[:split], values[split:]
    moments = RunningMoments.of(a)
    moments.merge(RunningMoments.of(b))
    assert moments.count == 101
    assert moments.mean == pytest.approx(np.mean(values), rel=1e-14)
    assert moments.m2 / moments.count == pytest.approx(np.var(values), rel=1e-10)
    empty = RunningMoments()
    empty.merge(RunningMoments.of(values))
    assert empty.std == pytest.approx(np.std(values), rel=1e-12)


def test_examples_do_not_depend_on_arrival_order_or_batch_size(stream):
    forward, backward = run("examples", stream), run("examples", stream[::-1])
    one_batch = ExampleKeeper(2, (28, 28), k=3)
    whole = {key: np.concatenate([item["map"].__dict__[key] for item in stream])
             for key in ("labels", "predictions", "probabilities", "maps", "artefact", "region", "has_artefact", "has_region")}
    mapped = MapBatch.from_predictions([p for item in stream for p in item["map"].paths], whole["labels"], whole["predictions"],
                                       whole["probabilities"], whole["maps"], whole["artefact"], whole["region"],
                                       whole["has_artefact"], whole["has_region"])
    one_batch.update(mapped, np.concatenate([item["images"] for item in stream]), ArtefactEnrichment().update(mapped))
    for group in ("most_artefact_salient", "least_artefact_salient", "misclassified"):
        expected = getattr(forward, f"{group}/path")
        assert getattr(backward, f"{group}/path") == expected == getattr(one_batch, f"{group}/path"), group
    scores = np.concatenate([ArtefactEnrichment().update(item["map"]) for item in stream])
    paths = np.array(mapped.paths)
    finite = np.isfinite(scores)
    by_hand = sorted(zip(-scores[finite], paths[finite]))[:3]  # highest score first, ties by path
    assert getattr(forward, "most_artefact_salient/path") == [path for _, path in by_hand]
