"""The verdict of ``audit finetune``, in plain words.

Viviano et al. (2019) find that better saliency maps and better generalisation need not go
together, so the two are judged separately, each as the chosen loss minus the ``none`` control
(same start, epochs and seeds), per seed:

- generalisation: ΔAUC = AUC(after) − AUC(control). "improved" when the mean exceeds both
  ``MIN_AUC`` and the standard deviation across seeds, "worse" when it is below minus that,
  else "unchanged".
- saliency: ΔIoU of the gradient map's peak with the regions (better when it rises beyond
  ``MIN_IOU`` and the spread) and Δenrichment of saliency on the artefact (better when it drops
  beyond ``MIN_ENRICHMENT`` and the spread), whichever the validation masks allow: "toward the
  region" when at least one is better and none worse, "away from the region" when at least one
  is worse and none better, "mixed" when they conflict, "unchanged", or "unknown" without masks.
- agree: whether generalisation improved exactly when saliency moved toward the region (None
  when saliency is unknown).
"""

from __future__ import annotations

from typing import Any

import numpy as np

MIN_AUC = 0.01
MIN_IOU = 0.01
MIN_ENRICHMENT = 0.05


def _differences(after: dict[str, Any], control: dict[str, Any], key: str) -> list[float]:
    pairs = zip(after["per_seed"], control["per_seed"])
    return [a[key] - c[key] for a, c in pairs if a.get(key) is not None and c.get(key) is not None]


def _change(values: list[float], minimum: float) -> tuple[int, float | None, float | None]:
    """(+1 up, −1 down, 0 unchanged), mean and standard deviation across seeds."""
    if not values:
        return 0, None, None
    mean = float(np.mean(values))
    spread = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    bar = max(minimum, spread)
    return (1 if mean > bar else -1 if mean < -bar else 0), mean, spread


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def verdict(loss: str, before: dict[str, Any], control: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The ``verdict`` block of results.json from the three ``valid`` blocks."""
    n = len(after["per_seed"])
    auc_sign, auc_mean, auc_std = _change(_differences(after, control, "auc"), MIN_AUC)
    generalisation = {1: "improved", -1: "worse", 0: "unchanged"}[auc_sign]
    measures = {}
    for key, name, minimum, direction in (("iou", "IoU with the regions", MIN_IOU, 1),
                                          ("enrichment", "enrichment on the artefact", MIN_ENRICHMENT, -1)):
        sign, mean, std = _change(_differences(after, control, key), minimum)
        if mean is not None:
            measures[name] = (sign * direction, mean, std)
    signs = {sign for sign, _, _ in measures.values()}
    if not measures:
        saliency = "unknown"
    elif signs >= {1, -1}:
        saliency = "mixed"
    else:
        saliency = "toward the region" if 1 in signs else "away from the region" if -1 in signs else "unchanged"
    agree = None if saliency == "unknown" else (generalisation == "improved") == (saliency == "toward the region")
    seeds = f"{n} seed{'s' if n != 1 else ''}"
    sentence = (
        f"Validation AUC {_fmt(after['auc'])} with {loss} against {_fmt(control['auc'])} for plain training "
        f"for the same epochs ({_fmt(before['auc'])} before): generalisation {generalisation} "
        f"(ΔAUC {_fmt(auc_mean)} ± {_fmt(auc_std)} over {seeds}). "
    )
    if saliency == "unknown":
        sentence += "Saliency could not be judged: the validation set has no region or artefact masks."
    else:
        changes = "; ".join(f"Δ {name} {_fmt(mean)} ± {_fmt(std)}" for name, (_, mean, std) in measures.items())
        sentence += (f"Saliency {saliency} ({changes}). "
                     + ("The two agree." if agree else "The two disagree: as Viviano et al. (2019) found, "
                        "changing the saliency maps and improving generalisation are not the same thing."))
    return {
        "generalisation": generalisation,
        "auc_difference": auc_mean,
        "auc_difference_std": auc_std,
        "saliency": saliency,
        "saliency_differences": {name: {"mean": mean, "std": std} for name, (_, mean, std) in measures.items()},
        "agree": agree,
        "seeds": n,
        "sentence": sentence,
    }
