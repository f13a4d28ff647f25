"""The verdict: loss − control on the report images, with an interval that says whether a change
is detectable, collapse named, and words that match the numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from audit.finetune.verdict import COLUMNS, Outcome, verdict

LABELS = np.repeat([0, 1], 30)
RNG = np.random.default_rng(0)
NOT_COLLAPSED = {"collapsed": False, "epoch": None, "signs": []}


def outcome(scores: np.ndarray, *, seed: int = 0, iou: np.ndarray | None = None, enrichment: np.ndarray | None = None,
            collapse: dict = NOT_COLLAPSED, best_epoch: int = 7, labels: np.ndarray = LABELS) -> Outcome:
    probabilities = np.stack([1 - scores, scores], axis=1)
    per_image = pd.DataFrame({COLUMNS["iou"]: iou, COLUMNS["enrichment"]: enrichment} if iou is not None else {})
    test = {"auc": float(roc_auc_score(labels, scores)), "accuracy": None,
            "iou": None if iou is None else float(np.nanmean(iou)),
            "enrichment": None if enrichment is None else float(np.nanmean(enrichment))}
    row = {"seed": seed, "test": test, "best_epoch": best_epoch, "epochs": 30, "collapse": collapse}
    return Outcome(row, labels, probabilities, per_image)


def separating(strength: float, seed: int = 0) -> np.ndarray:
    """Class-1 scores shifted up by ``strength`` (0: no information)."""
    rng = np.random.default_rng(seed)
    return 1 / (1 + np.exp(-(rng.normal(size=LABELS.size) + strength * (2 * LABELS - 1))))


def test_one_seed_reports_a_bootstrap_interval_and_improvement() -> None:
    iou = RNG.uniform(0.1, 0.2, LABELS.size)
    after = outcome(separating(1.0), iou=iou + 0.2, enrichment=np.full(LABELS.size, 1.0))
    control = outcome(separating(-1.0, 1), iou=iou, enrichment=np.full(LABELS.size, 5.0))
    v = verdict("actdiff", [after], [control], outcome(separating(-3.0, 2)))
    assert v["generalisation"] == "improved" and v["saliency"] == "toward the region" and v["agree"] is True
    low, high = v["auc_difference"]["ci95"]
    assert 0 < low < v["auc_difference"]["mean"] < high
    assert v["auc_difference"]["mean"] == pytest.approx(after.row["test"]["auc"] - control.row["test"]["auc"])
    assert v["saliency_differences"]["IoU with the regions"]["ci95"] == pytest.approx([0.2, 0.2])
    assert "95% CI" in v["sentence"] and "bootstrap over 60 images" in v["sentence"] and "± 0.000" not in v["sentence"]
    assert "selected at epoch 7 of 30" in v["sentence"]


def test_several_seeds_use_a_t_interval_over_the_seeds() -> None:
    after = [outcome(separating(0.5 * s, s), seed=s) for s in range(3)]
    control = [outcome(separating(0.5, 10 + s), seed=s) for s in range(3)]
    v = verdict("actdiff", after, control, control[0])
    differences = [a.row["test"]["auc"] - c.row["test"]["auc"] for a, c in zip(after, control)]
    expected = stats.t.interval(0.95, 2, loc=np.mean(differences), scale=stats.sem(differences))
    assert v["auc_difference"]["ci95"] == pytest.approx(list(expected))
    assert v["auc_difference"]["std"] == pytest.approx(np.std(differences, ddof=1))
    assert v["auc_difference"]["interval"] == "t-interval over 3 seeds"


def test_an_interval_that_covers_zero_is_no_detectable_change() -> None:
    after = outcome(separating(0.2, 3))
    control = outcome(separating(0.2, 4))
    v = verdict("gradmask", [after], [control], control)
    low, high = v["auc_difference"]["ci95"]
    assert low < 0 < high
    assert v["generalisation"] == "no detectable change" and v["saliency"] == "unknown" and v["agree"] is None


def test_a_collapsed_run_is_never_called_improved() -> None:
    collapse = {"collapsed": True, "epoch": 4, "signs": ["classification loss at ln K", "constant predictions"]}
    after = outcome(np.full(LABELS.size, 0.5), collapse=collapse)  # AUROC 0.5 from a constant output
    control = outcome(separating(-3.0))  # the biased control is below chance: 0.5 is "better"
    v = verdict("actdiff", [after], [control], control)
    assert v["auc_difference"]["mean"] > 0.4
    assert v["generalisation"] == "collapsed" and v["collapsed_seeds"] == [0]
    assert "improved" not in v["sentence"] and "collapsed" in v["sentence"] and "epoch 4" in v["sentence"]


def test_below_chance_is_said() -> None:
    after = outcome(separating(-1.0, 5))
    control = outcome(separating(-3.0, 6))
    v = verdict("actdiff", [after], [control], control)
    assert v["generalisation"] == "improved" and after.row["test"]["auc"] < 0.5
    assert "below chance" in v["sentence"]


def test_toward_the_region_is_never_said_while_iou_falls() -> None:
    iou = RNG.uniform(0.3, 0.4, LABELS.size)
    after = outcome(separating(1.0), iou=iou - 0.001 * RNG.uniform(size=LABELS.size), enrichment=np.full(LABELS.size, 1.0))
    control = outcome(separating(1.0), iou=iou, enrichment=np.full(LABELS.size, 4.0))
    v = verdict("actdiff", [after], [control], control)
    assert v["saliency_differences"]["IoU with the regions"]["mean"] < 0
    assert v["saliency_differences"]["enrichment on the artefact"]["ci95"][1] < 0  # enrichment fell for sure
    assert v["saliency"] != "toward the region" and "toward the region" not in v["sentence"]


def test_conflicting_saliency_measures_are_mixed() -> None:
    iou = RNG.uniform(0.3, 0.4, LABELS.size)
    after = outcome(separating(1.0), iou=iou - 0.1, enrichment=np.full(LABELS.size, 1.0))
    control = outcome(separating(1.0), iou=iou, enrichment=np.full(LABELS.size, 4.0))
    assert verdict("actdiff", [after], [control], control)["saliency"] == "mixed"
