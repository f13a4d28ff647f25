"""The verdict of ``audit finetune`` for one loss against the ``none`` control, in plain words.

Viviano et al. (2019) find that better saliency maps and better generalisation need not go
together, so the two are judged separately, each as the loss minus the control (same start,
epochs and seeds), on the report images (``experiment``):

- generalisation: ΔAUROC = AUROC(loss) − AUROC(control). "collapsed" when at least half the
  seeds' runs collapsed (``collapse``); else "improved" / "worse" when the 95% interval of
  ΔAUROC lies above / below 0, "no detectable change" when it covers 0.
- saliency: ΔIoU of the gradient map's peak with the regions (better when it rises) and
  Δenrichment of saliency on the artefact (better when it falls), whichever the report masks
  allow. "toward the region" needs at least one better measure with an interval clear of 0,
  none worse, and a ΔIoU mean that is not negative (so it is never said while the IoU falls);
  "away from the region" the mirror image; "mixed" when one is better and another worse; "no
  detectable change"; "unknown" without masks.
- agree: whether generalisation improved exactly when saliency moved toward the region.

Intervals (``uncertainty``): with one seed a paired, class-stratified bootstrap over the report
images; with several, Student's t over the per-seed differences (their standard deviation is
the spread).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from audit.finetune.uncertainty import bootstrap, direction, resampled_auroc, t_interval

COLUMNS = {"iou": "gradient.region_iou", "enrichment": "gradient.artefact_enrichment"}  # per_image.csv
MEASURES = (("iou", "IoU with the regions", 1), ("enrichment", "enrichment on the artefact", -1))


@dataclass(frozen=True)
class Outcome:
    """What the verdict reads of one trained model: its JSON row and report-image values."""

    row: dict[str, Any]
    labels: np.ndarray
    probabilities: np.ndarray
    per_image: pd.DataFrame

    @classmethod
    def of(cls, measured: Any) -> Outcome:
        return cls(measured.row, measured.evaluation.labels, measured.evaluation.probabilities, measured.per_image)

    def auc(self, rows: np.ndarray) -> np.ndarray:
        return resampled_auroc(self.labels, self.probabilities, rows)


def _column(outcome: Outcome, key: str) -> np.ndarray | None:
    column = COLUMNS[key]
    return outcome.per_image[column].to_numpy(dtype=np.float64) if column in outcome.per_image else None


def _mean_difference(after: np.ndarray, control: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per resample, the mean of after − control over the resampled images where both are defined."""
    difference = (after - control)[rows]
    with np.errstate(invalid="ignore"):
        return np.nanmean(np.where(np.isfinite(difference), difference, np.nan), axis=1)


def _change(after: list[Outcome], control: list[Outcome], key: str, seed: int) -> dict[str, Any] | None:
    """Mean, 95% interval and spread over seeds of the loss − control difference of ``key``."""
    if key == "auc":
        per_seed = [a.row["test"]["auc"] - c.row["test"]["auc"] for a, c in zip(after, control)
                    if a.row["test"]["auc"] is not None and c.row["test"]["auc"] is not None]
    else:
        per_seed = [a.row["test"][key] - c.row["test"][key] for a, c in zip(after, control)
                    if a.row["test"].get(key) is not None and c.row["test"].get(key) is not None]
    if not per_seed:
        return None
    if len(after) == 1:
        a, c = after[0], control[0]
        if key == "auc":
            interval = bootstrap(lambda index: a.auc(index) - c.auc(index), a.labels, seed)
        else:
            values_a, values_c = _column(a, key), _column(c, key)
            if values_a is None or values_c is None:
                return None
            interval = bootstrap(lambda index: _mean_difference(values_a, values_c, index), a.labels, seed)
            # the mean of the images the bootstrap resamples (the labelled report images)
            per_seed = [float(_mean_difference(values_a, values_c, np.arange(len(a.labels))[None])[0])]
        how, spread = f"bootstrap over {len(a.labels)} images", None
    else:
        interval, how = t_interval(per_seed), f"t-interval over {len(per_seed)} seeds"
        spread = float(np.std(per_seed, ddof=1))
    return {"mean": float(np.mean(per_seed)), "ci95": list(interval) if interval else None, "std": spread,
            "interval": how, "per_seed": per_seed}


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _with_interval(change: dict[str, Any]) -> str:
    text = _signed(change["mean"])
    if change["std"] is not None:
        text += f" ± {change['std']:.3f}"
    if change["ci95"] is not None:
        low, high = change["ci95"]
        text += f", 95% CI {low:+.3f} to {high:+.3f}, {change['interval']}"
    return text


def _saliency(changes: dict[str, tuple[dict[str, Any], int]]) -> str:
    """Saliency's direction from the measures' intervals; "toward the region" never while the
    IoU's mean falls, "away from the region" never while it rises."""
    if not changes:
        return "unknown"
    better = {name for name, (change, sense) in changes.items() if direction(change["ci95"]) * sense > 0}
    worse = {name for name, (change, sense) in changes.items() if direction(change["ci95"]) * sense < 0}
    iou = changes.get("IoU with the regions")
    iou_mean = 0.0 if iou is None else iou[0]["mean"]
    if better and worse:
        return "mixed"
    if better and iou_mean >= 0:
        return "toward the region"
    if worse and iou_mean <= 0:
        return "away from the region"
    return "no detectable change"


def verdict(loss: str, after: list[Outcome], control: list[Outcome], before: Outcome,
            report_name: str = "test") -> dict[str, Any]:
    """The ``verdict.<loss>`` block of results.json."""
    seed = int(after[0].row["seed"])
    n = len(after)
    collapsed = [o.row for o in after if o.row["collapse"]["collapsed"]]
    auc = _change(after, control, "auc", seed)
    if 2 * len(collapsed) >= n:
        generalisation = "collapsed"
    else:
        generalisation = {1: "improved", -1: "worse", 0: "no detectable change"}[direction(auc["ci95"]) if auc else 0]
    changes = {name: (change, sense) for key, name, sense in MEASURES
               if (change := _change(after, control, key, seed)) is not None}
    saliency = _saliency(changes)
    agree = None if saliency == "unknown" or generalisation == "collapsed" else (
        (generalisation == "improved") == (saliency == "toward the region"))
    mean_auc = float(np.mean([o.row["test"]["auc"] for o in after if o.row["test"]["auc"] is not None] or [math.nan]))
    mean_control = float(np.mean([o.row["test"]["auc"] for o in control if o.row["test"]["auc"] is not None] or [math.nan]))
    best_epochs = [o.row["best_epoch"] for o in after]
    seeds = f"{n} seed{'s' if n != 1 else ''}"
    sentence = (f"{report_name.capitalize()} AUROC {_number(mean_auc)} with {loss} against {_number(mean_control)} "
                f"for plain training for the same epochs ({_number(before.row['test']['auc'])} before; {seeds}")
    sentence += (f", selected at epoch {best_epochs[0]} of {after[0].row['epochs']} by validation AUROC). " if n == 1 else
                 f", selected at epochs {', '.join(map(str, best_epochs))} by validation AUROC). ")
    if mean_auc < 0.5:
        sentence += f"It is still below chance (AUROC {_number(mean_auc)} < 0.5). "
    if collapsed:
        where = "; ".join(f"seed {row['seed']} at epoch {row['collapse']['epoch']} ({', '.join(row['collapse']['signs'])})"
                          for row in collapsed)
        sentence += f"Training collapsed in {len(collapsed)} of {n} run{'s' if n != 1 else ''}: {where}. "
    control_collapsed = [o.row for o in control if o.row["collapse"]["collapsed"]]
    if control_collapsed:
        where = "; ".join(f"seed {row['seed']} at epoch {row['collapse']['epoch']} ({', '.join(row['collapse']['signs'])})"
                          for row in control_collapsed)
        sentence += f"The plain-training control collapsed too ({where}), so it is a weak baseline. "
    if generalisation == "collapsed":
        sentence += "Generalisation: collapsed, so its AUROC is no evidence of improvement. "
    elif auc is not None:
        sentence += f"Generalisation {generalisation} (ΔAUROC {_with_interval(auc)}). "
    if saliency == "unknown":
        sentence += f"Saliency could not be judged: the {report_name} images have no region or artefact masks."
    else:
        details = "; ".join(f"Δ {name} {_with_interval(change)}" for name, (change, _) in changes.items())
        sentence += f"Saliency {saliency} ({details})."
        if agree is not None:
            sentence += (" The two agree." if agree else " The two disagree: as Viviano et al. (2019) found, changing "
                         "the saliency maps and improving generalisation are not the same thing.")
    return {
        "loss": loss,
        "generalisation": generalisation,
        "auc_difference": auc,
        "collapsed_seeds": [row["seed"] for row in collapsed],
        "control_collapsed_seeds": [row["seed"] for row in control_collapsed],
        "collapse": [{"seed": row["seed"], **row["collapse"]} for row in collapsed],
        "below_chance": bool(mean_auc < 0.5),
        "best_epochs": best_epochs,
        "saliency": saliency,
        "saliency_differences": {name: change for name, (change, _) in changes.items()},
        "agree": agree,
        "seeds": n,
        "sentence": sentence,
    }
