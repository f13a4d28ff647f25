"""The results.json layout of one method's metrics: gate-able keys, hand-checked numbers, nulls with reasons."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from audit.metrics.base import MapBatch
from audit.metrics.suite import MethodMetrics


def batch(n: int = 6, with_regions: bool = True) -> MapBatch:
    maps = np.zeros((n, 4, 4), np.float32)
    artefact = np.zeros((n, 4, 4), bool)
    artefact[:, 0, :2] = True  # 2 of 16 pixels: area share 1/8
    for i in range(n):
        maps[i] = 1.0
        maps[i, 0, :2] = 1.0 + i  # saliency share on the artefact: 2(1+i) / (14 + 2(1+i))
    region = np.zeros((n, 4, 4), bool)
    region[:, 2:, 2:] = with_regions
    return MapBatch.from_predictions(
        paths=[f"{i}.png" for i in range(n)],
        labels=np.array([0, 1] * (n // 2)),
        predictions=np.array([0, 0] * (n // 2)),
        probabilities=np.full(n, 0.9),
        maps=maps,
        artefact=artefact,
        region=region,
        has_artefact=np.ones(n, bool),
        has_region=np.full(n, with_regions),
    )


def test_enrichment_overall_and_by_class_are_hand_computed_means_with_t_intervals() -> None:
    suite = MethodMetrics(["cat", "dog"])
    suite.update(batch())
    result = suite.compute()["artefact"]["enrichment"]
    shares = np.array([2 * (1 + i) / (14 + 2 * (1 + i)) for i in range(6)])
    values = shares / (2 / 16)
    assert result["overall"] == pytest.approx(values.mean())
    low, high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    assert result["ci95"] == pytest.approx([low, high])
    assert result["n"] == 6
    assert result["by_class"]["cat"]["mean"] == pytest.approx(values[0::2].mean())
    assert result["by_class"]["dog"]["mean"] == pytest.approx(values[1::2].mean())


def test_schema_keys_and_null_with_reason_without_region_masks() -> None:
    suite = MethodMetrics(["cat", "dog"])
    suite.update(batch(with_regions=False))
    result = suite.compute()
    for key in ("mean_saliency", "peak_share", "enrichment"):
        assert {"overall", "ci95", "by_class"} <= set(result["artefact"][key])
    assert {"value", "accuracy", "kendall_tau", "curve"} <= set(result["aurrac"])
    for key in ("iou", "iop", "iot", "auprc", "pointing_game", "relevance_mass", "rank_accuracy"):
        assert result["region"][key]["mean"] is None
    assert "no region mask: 6" in result["region"]["reason"]
    assert result["aurrac"]["accuracy"] == pytest.approx(0.5)


def test_per_image_columns_align_with_images() -> None:
    suite = MethodMetrics(["cat", "dog"])
    suite.update(batch())
    columns = suite.per_image()
    assert all(len(values) == 6 for values in columns.values())
    assert columns["artefact_enrichment"][0] == pytest.approx(1.0)  # uniform map: chance
    assert columns["artefact_enrichment"][1] == pytest.approx((4 / 18) / (2 / 16))
