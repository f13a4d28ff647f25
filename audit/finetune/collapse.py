"""Signs that fine-tuning collapsed to a trivial solution.

actdiff is minimised by features that do not depend on the input (L_act = 0); the classifier
then outputs a constant and the classification loss sits at ln K (Viviano et al. 2019, Table 1:
"CNN Actdiff" scores AUC 0.5 in train and validation). A run is *collapsed* when its signs last
to its final epoch, or when its selected model shows any of them (our thresholds, chosen well clear of trained models, which
measure orders of magnitude away from them):

- "loss not finite": a training loss became NaN or infinite;
- "classification loss at ln K": the epoch's mean training cross-entropy within 5% of ln K
  (what outputs of 1/K for every image score);
- "constant predictions": on the selection images the outputs do not depend on the image: the
  logits, centred per image (log-probabilities up to a constant), vary over the images by less
  than ``CONSTANT`` (standard deviation, largest over the classes). Logits, not probabilities:
  a saturated softmax can rank the images perfectly while every probability is within 1e-3 of 1;
- "features without variance": the pooled features read by the classifier vary over the images
  by less than ``FLAT`` of their magnitude (√(mean_d var_d) / √(mean_d E[f_d²]));
- "AUC at chance": the AUROC of the report images has a bootstrap interval that covers 0.5.

The first four are checked after every epoch (``epoch_signs``); the last on the selected model
only, on the report images, which did not choose it. A run's collapse epoch is the first epoch
of the unbroken stretch of epochs with signs that ends at the final epoch when that one shows
signs, else at the selected epoch (or the selected epoch itself when only the AUC is at chance).
"""

from __future__ import annotations

import math

import numpy as np

LOSS_AT_CHANCE = 0.05  # relative distance from ln K
CONSTANT = 1e-3
FLAT = 1e-3


def epoch_signs(classification_loss: float | None, logits: np.ndarray, features: np.ndarray | None) -> list[str]:
    """The collapse signs of one epoch (training loss, selection-set logits and features)."""
    signs = []
    if classification_loss is not None and not math.isfinite(classification_loss):
        return ["loss not finite"]
    chance = math.log(logits.shape[1])
    if classification_loss is not None and abs(classification_loss - chance) <= LOSS_AT_CHANCE * chance:
        signs.append("classification loss at ln K")
    centred = logits - logits.mean(axis=1, keepdims=True)
    if len(logits) > 1 and float(np.max(np.std(centred, axis=0))) < CONSTANT:
        signs.append("constant predictions")
    if features is not None and len(features) > 1:
        features = features.reshape(len(features), -1).astype(np.float64)
        spread = math.sqrt(float(np.mean(np.var(features, axis=0))))
        magnitude = math.sqrt(float(np.mean(features**2)))
        if spread <= FLAT * magnitude or magnitude == 0:
            signs.append("features without variance")
    return signs


def collapse_epoch(history_signs: list[list[str]], selected: int) -> int | None:
    """First epoch (1-based) of the run of epochs with signs that ends at ``selected``; None
    when the selected epoch shows none."""
    if selected < 1 or not history_signs[selected - 1]:
        return None
    first = selected
    while first > 1 and history_signs[first - 2]:
        first -= 1
    return first


def auc_at_chance(interval: tuple[float, float] | None) -> bool:
    return interval is not None and interval[0] <= 0.5 <= interval[1]
