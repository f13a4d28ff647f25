"""Builders for MapBatch test data (imported by the tests as ``metric_batches``)."""

from __future__ import annotations

import numpy as np
from audit.metrics.base import MapBatch


def build_batch(
    maps: np.ndarray,
    artefact: np.ndarray | None = None,
    region: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    predictions: np.ndarray | None = None,
    has_artefact: np.ndarray | None = None,
    has_region: np.ndarray | None = None,
    first_index: int = 0,
) -> MapBatch:
    """A batch with defaults: masks present, all labels 0, all predictions 0."""
    maps = np.asarray(maps, dtype=np.float32)
    n = maps.shape[0]
    artefact = np.zeros(maps.shape, bool) if artefact is None else np.asarray(artefact, bool)
    region = np.zeros(maps.shape, bool) if region is None else np.asarray(region, bool)
    labels = np.zeros(n, int) if labels is None else np.asarray(labels)
    predictions = np.zeros(n, int) if predictions is None else np.asarray(predictions)
    return MapBatch.from_predictions(
        paths=[f"img{first_index + i:04d}.png" for i in range(n)],
        labels=labels,
        predictions=predictions,
        probabilities=np.full(n, 0.9),
        maps=maps,
        artefact=artefact,
        region=region,
        has_artefact=np.ones(n, bool) if has_artefact is None else has_artefact,
        has_region=np.ones(n, bool) if has_region is None else has_region,
    )


def split_batch(batch: MapBatch, size: int) -> list[MapBatch]:
    """The same images in consecutive batches of ``size``."""
    parts = []
    for start in range(0, len(batch), size):
        s = slice(start, start + size)
        parts.append(MapBatch(
            paths=batch.paths[s], labels=batch.labels[s], predictions=batch.predictions[s],
            probabilities=batch.probabilities[s], correct=batch.correct[s],
            labelled=batch.labelled[s], maps=batch.maps[s], artefact=batch.artefact[s],
            region=batch.region[s], has_artefact=batch.has_artefact[s],
            has_region=batch.has_region[s],
        ))
    return parts


def random_batch(seed: int, n: int = 12, size: int = 8) -> MapBatch:
    """Random signed maps, random masks (some missing or empty), labels with unknowns."""
    rng = np.random.default_rng(seed)
    maps = rng.normal(size=(n, size, size)).astype(np.float32)
    maps[rng.random(n) < 0.2] = np.round(maps[0])  # some maps with many ties
    artefact = rng.random((n, size, size)) < 0.2
    region = rng.random((n, size, size)) < 0.3
    artefact[rng.random(n) < 0.15] = False
    region[rng.random(n) < 0.15] = False
    labels = rng.integers(-1, 3, n)
    return build_batch(
        maps, artefact, region, labels=labels, predictions=rng.integers(0, 3, n),
        has_artefact=rng.random(n) < 0.85, has_region=rng.random(n) < 0.85,
    )
