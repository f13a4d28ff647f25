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
    detection = result["region"]["pointwise_detection"]
    assert detection["map"] is None and detection["positives"] == 0 and detection["images"] == 6
    assert "no region mask: 6" in detection["reason"]
    assert result["aurrac"]["accuracy"] == pytest.approx(0.5)


def test_per_image_columns_align_with_images() -> None:
    suite = MethodMetrics(["cat", "dog"])
    suite.update(batch())
    columns = suite.per_image()
    assert all(len(values) == 6 for values in columns.values())
    assert columns["artefact_enrichment"][0] == pytest.approx(1.0)  # uniform map: chance
    assert columns["artefact_enrichment"][1] == pytest.approx((4 / 18) / (2 / 16))


def nulls_without_reason(block, path="", reason=False):
    """Paths of None values in ``block`` that have neither a "<key>_reason" beside them nor a
    "reason" in a dict on the way down."""
    if isinstance(block, dict):
        reason = reason or isinstance(block.get("reason"), str)
        missing = []
        for key, value in block.items():
            if value is None and not reason and not any(
                    k.endswith("_reason") and f"{key}_".startswith(k.removesuffix("reason")) for k in block):
                missing.append(f"{path}{key}")
            missing += nulls_without_reason(value, f"{path}{key}.", reason)
        return missing
    if isinstance(block, list):
        return [m for i, v in enumerate(block) for m in nulls_without_reason(v, f"{path}{i}.", reason)]
    return []


def rebuilt(data: MapBatch, n: int | None = None, maps=None, labels=None) -> MapBatch:
    """The first ``n`` images of ``data``, with other maps or labels."""
    n = len(data) if n is None else n
    maps = data.maps if maps is None else maps
    labels = data.labels if labels is None else labels
    return MapBatch.from_predictions(data.paths[:n], labels[:n], data.predictions[:n], data.probabilities[:n],
                                     maps[:n], data.artefact[:n], data.region[:n], data.has_artefact[:n],
                                     data.has_region[:n])


@pytest.mark.parametrize("case", ["constant maps", "one image", "no region masks", "one class", "negative maps"])
def test_every_null_has_a_reason(case) -> None:
    data = batch(with_regions=case != "no region masks")
    data = rebuilt(data, n=1 if case == "one image" else None,
                   maps={"constant maps": np.ones_like(data.maps), "negative maps": -data.maps}.get(case),
                   labels=np.zeros(len(data), int) if case == "one class" else None)
    suite = MethodMetrics(["cat", "dog"])
    suite.update(data)
    assert nulls_without_reason(suite.compute()) == []


def test_reasons_say_why() -> None:
    suite = MethodMetrics(["cat", "dog"])
    suite.update(rebuilt(batch(), n=1))
    result = suite.compute()
    assert result["artefact"]["enrichment"]["ci95"] is None
    assert result["artefact"]["enrichment"]["ci95_reason"] == "one image: no spread, no interval"
    assert "single curve point" in result["aurrac"]["kendall_reason"]
    assert "two classes" in result["artefact"]["peak_share"]["inter_class_variance_reason"]
    suite = MethodMetrics(["cat", "dog"])
    suite.update(rebuilt(batch(), maps=np.ones_like(batch().maps)))
    mean = suite.compute()["artefact"]["mean_saliency"]
    assert mean["overall"] is None and "same value" in mean["reason"]
    assert mean["raw"]["overall"] == 1.0
    suite = MethodMetrics(["cat", "dog"])
    suite.update(rebuilt(batch(), maps=-batch().maps))
    region = suite.compute()["region"]
    assert region["iou"]["mean"] is not None and region["relevance_mass"]["mean"] is None
    assert "relevance mass without positive saliency: 6" in region["relevance_mass"]["reason"]


def test_intervals_are_named_per_block() -> None:
    suite = MethodMetrics(["cat", "dog"])
    suite.update(batch())
    result = suite.compute()
    assert result["artefact"]["enrichment"]["interval"] == "student-t"
    assert result["region"]["iou"]["interval"] == "student-t"
    assert result["region"]["pointing_game"]["interval"] == "clopper-pearson"
    assert result["aurrac"]["interval"] == "clopper-pearson"
    assert result["aurrac"]["kendall_points"] == 6
