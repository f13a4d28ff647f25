"""The verdict: differences against the control, judged against their spread across seeds."""

from __future__ import annotations

from audit.finetune.verdict import verdict


def _block(rows: list[dict]) -> dict:
    return {"auc": sum(r["auc"] for r in rows) / len(rows), "per_seed": rows}


def test_improved_generalisation_and_saliency_agree() -> None:
    control = _block([{"auc": 0.1, "iou": 0.1, "enrichment": 5.0}, {"auc": 0.2, "iou": 0.1, "enrichment": 6.0}])
    after = _block([{"auc": 0.9, "iou": 0.3, "enrichment": 1.0}, {"auc": 0.95, "iou": 0.35, "enrichment": 1.2}])
    v = verdict("actdiff", _block([{"auc": 0.0}]), control, after)
    assert v["generalisation"] == "improved" and v["saliency"] == "toward the region" and v["agree"] is True
    assert abs(v["auc_difference"] - 0.775) < 1e-9 and abs(v["auc_difference_std"] - 0.0353553) < 1e-6
    assert "0.775" in v["sentence"] and "agree" in v["sentence"]


def test_a_difference_within_the_seed_spread_is_unchanged() -> None:
    control = _block([{"auc": 0.5}, {"auc": 0.5}, {"auc": 0.5}])
    after = _block([{"auc": 0.9}, {"auc": 0.3}, {"auc": 0.5}])
    v = verdict("gradmask", control, control, after)
    assert v["generalisation"] == "unchanged" and v["saliency"] == "unknown" and v["agree"] is None


def test_better_maps_without_better_auc_disagree() -> None:
    control = _block([{"auc": 0.8, "enrichment": 4.0}])
    after = _block([{"auc": 0.8, "enrichment": 1.0}])
    v = verdict("gradmask", control, control, after)
    assert v["generalisation"] == "unchanged" and v["saliency"] == "toward the region" and v["agree"] is False
    assert "disagree" in v["sentence"]


def test_conflicting_saliency_measures_are_mixed() -> None:
    control = _block([{"auc": 0.5, "iou": 0.3, "enrichment": 4.0}])
    after = _block([{"auc": 0.4, "iou": 0.1, "enrichment": 1.0}])
    v = verdict("actdiff", control, control, after)
    assert v["generalisation"] == "worse" and v["saliency"] == "mixed"
