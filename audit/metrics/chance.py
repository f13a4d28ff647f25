"""Plausible-looking nonsense, said out loud: predictions that do not depend on the image, or an
accuracy no better than guessing. Both are what a model fed differently from how it was trained
gives (a forgotten ``--mean/--std``, the wrong ``--value-range`` or channel order), and every
saliency number computed on such a run describes that mistake, not the model.

Our rules, over the whole run (at least ``MIN_IMAGES`` images, single-label models):

- nearly constant: one class takes at least ``CONSTANT_SHARE`` of the predictions while the
  labelled images hold at least two classes;
- at chance: the accuracy's 95% Clopper–Pearson interval (``performance``) contains 1/K, the
  accuracy of guessing uniformly among K classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

MIN_IMAGES = 20
CONSTANT_SHARE = 0.99
FIX = ("check the input normalisation (--mean, --std, --value-range, --channels; audit reads them from the model's "
       "metadata when it has them) and that the class order matches the model's outputs")


def chance_warnings(labels: np.ndarray, probabilities: np.ndarray, performance: dict[str, Any], class_names: list[str],
                    multilabel: bool, model: Path) -> list[str]:
    """The warnings for results.json (module docstring); ``labels`` −1 where unknown."""
    classes = len(class_names)
    if multilabel or classes < 2 or len(probabilities) < MIN_IMAGES:
        return []
    warnings = []
    predicted = np.bincount(np.asarray(probabilities).argmax(axis=1), minlength=classes)
    top = int(predicted.argmax())
    share = predicted[top] / predicted.sum()
    labelled = labels[labels >= 0]
    if share >= CONSTANT_SHARE and len(np.unique(labelled)) >= 2:
        warnings.append(f"{model}: {share:.1%} of the {int(predicted.sum())} images are predicted as {class_names[top]!r} "
                        f"although the labels hold {len(np.unique(labelled))} classes: the output barely depends on the "
                        f"image; {FIX}")
    accuracy, interval, n = performance.get("accuracy"), performance.get("accuracy_ci95"), performance.get("n") or 0
    if accuracy is not None and interval and n >= MIN_IMAGES and interval[0] <= 1 / classes <= interval[1]:
        warnings.append(f"{model}: the accuracy {accuracy:.3f} (95% CI {interval[0]:.3f}–{interval[1]:.3f}, {n} labelled "
                        f"images) is at chance (1/{classes} = {1 / classes:.3f}): the model does no better than guessing "
                        f"here, so its maps explain noise; {FIX}")
    return warnings
