"""Ablation: does the prediction survive removing the artefact, or everything but the region?
(Pfau et al. 2019, "Global Saliency: Aggregating Saliency Maps to Assess Dataset Artefact
Bias", Appendix A.1: pixels are replaced "with the mean value pixel for that image", and the
share of predictions that remain invariant is reported: 52% for their baseline model.)

Per image X with class probabilities p, predicted class y = argmax_k p_k(X) and explained class
t (``--target``, ``audit.target``; t = y by default):

    artefact ablation   X_A = X with every pixel of the artefact mask A set to μ(X)
    region ablation     X_R = X with every pixel *outside* the region mask R set to μ(X)
    same   = [argmax_k p_k(X') = y]    (the prediction survives, whatever class is explained)
    delta  = p_t(X') − p_t(X)          (negative: the ablation lowered the explained class's probability)

"Same" is Pfau's invariance of the prediction, so the flip rate means the same thing under every
``--target``; the delta is the explained class's, the class whose maps the saliency-vs-ablation
correlation compares it with (our choice: with ``--target label`` on a misclassified image the
maps explain the label, and so does the delta).

μ(X) is the per-channel mean over all pixels of the original image (artefact and region
included), computed in [0, 1] image space before ``spec.to_tensor``. Our choice; because the
normalisation ``(x·(hi−lo)+lo−mean)/std`` is affine per channel, this is the same tensor as
taking the per-channel mean of the normalised input. The ablated images go through the
forward-only path ``classifier.logits`` (onnxruntime for ONNX models) and
``classifier.probabilities`` (softmax, or sigmoid for ``--multilabel``), so "same" compares
argmax classes in either case.

Images without the mask file or with an empty mask are excluded from that ablation and
counted. Summaries: the share of unchanged predictions with a 95% Clopper–Pearson interval
(a proportion of images: ``intervals.proportion_interval``; 0 of 30 changed gives 88.4%–100%
unchanged, not a point), the mean delta with a 95% Student t-interval
(``intervals.mean_interval``), and how many changed predictions went to each class (Pfau
report the share moved to "Other").
"""

from __future__ import annotations

import math
from collections import Counter
from typing import NamedTuple

import numpy as np
import torch

from audit.data.batch import Batch
from audit.metrics.base import exclusion_reason, scored_images
from audit.metrics.intervals import mean_interval, proportion_interval
from audit.models.classifier import Classifier

KINDS = ("artefact", "region")


class AblationResult(NamedTuple):
    """One batch's per-image results, (N,) float arrays, NaN where the image is excluded.

    ``*_same`` is 1.0/0.0, ``*_delta`` is p_t(ablated) − p_t(original); the drop that
    ``SaliencyIntervention`` takes is ``-artefact_delta``.
    """

    artefact_same: np.ndarray
    artefact_delta: np.ndarray
    region_same: np.ndarray
    region_delta: np.ndarray


def ablate(images: np.ndarray, masks: np.ndarray, keep: bool) -> np.ndarray:
    """Copy of (N, H, W, C) ``images`` with the masked pixels (``keep=False``) or the pixels
    outside the mask (``keep=True``) set to each image's per-channel mean."""
    images = np.asarray(images, dtype=np.float32)
    means = images.mean(axis=(1, 2), keepdims=True)  # (N, 1, 1, C), over the whole image
    replace = ~masks if keep else masks
    return np.where(replace[..., None], means, images)


class ArtefactAblation:
    """Streaming artefact and region ablation over batches (see the module docstring).

    ``update(batch, classifier, probabilities, target)`` per batch: ``probabilities`` is the
    (N, K) output on the original images (its argmax is the prediction), ``target`` the (N,)
    explained classes whose probability change is recorded. One extra forward pass per ablation
    kind on the eligible images of the batch; only per-image scalars are kept. ``confidence``
    sets the level of the intervals.
    """

    name = "ablation"

    def __init__(self, confidence: float = 0.95) -> None:
        self.confidence = confidence
        self._same: dict[str, list[float]] = {kind: [] for kind in KINDS}
        self._delta: dict[str, list[float]] = {kind: [] for kind in KINDS}
        self._after: dict[str, Counter[int]] = {kind: Counter() for kind in KINDS}
        self._excluded = {
            "artefact": {"no_artefact_mask": 0, "empty_artefact_mask": 0},
            "region": {"no_region_mask": 0, "empty_region_mask": 0},
        }

    def update(
        self,
        batch: Batch,
        classifier: Classifier,
        probabilities: np.ndarray,
        target: np.ndarray,
    ) -> AblationResult:
        """Ablate, forward, record; returns this batch's per-image results."""
        probabilities = np.asarray(probabilities, dtype=np.float64)
        target = np.asarray(target, dtype=np.int64)
        n = len(batch)
        if probabilities.shape[0] != n or target.shape != (n,):
            raise ValueError(f"probabilities {probabilities.shape} and target "
                             f"{target.shape} do not match a batch of {n} images")
        predictions = probabilities.argmax(axis=1)
        columns: dict[str, np.ndarray] = {}
        for kind, masks in (("artefact", batch.artefact), ("region", batch.region)):
            same = np.full(n, math.nan)
            delta = np.full(n, math.nan)
            eligible = scored_images(batch, self._excluded[kind], kind)
            if eligible.any():
                ablated = ablate(batch.images[eligible], masks[eligible], keep=kind == "region")
                logits = classifier.logits(classifier.to_input(ablated))
                after = classifier.probabilities(logits).to(torch.float64).cpu().numpy()
                predicted, explained = predictions[eligible], target[eligible]
                rows = np.arange(len(explained))
                new_class = after.argmax(axis=1)
                same[eligible] = (new_class == predicted).astype(np.float64)
                delta[eligible] = after[rows, explained] - probabilities[eligible][rows, explained]
                self._after[kind].update(int(k) for k in new_class[new_class != predicted])
            self._same[kind].extend(same.tolist())
            self._delta[kind].extend(delta.tolist())
            columns[f"{kind}_same"], columns[f"{kind}_delta"] = same, delta
        return AblationResult(**columns)

    def compute(self) -> dict:
        """{"name", "fill", "artefact": {...}, "region": {...}}; per kind "n" (ablated images),
        "excluded" (counts by reason), "unchanged" (share of same predictions,
        proportion_interval), "delta_probability" (mean_interval of p_t after − before),
        "changed_to" ({class index: count} over the changed predictions), and "reason" when no
        image could be ablated."""
        result: dict = {
            "name": self.name,
            "fill": "per-channel mean of the whole image, in [0, 1] image space",
        }
        for kind in KINDS:
            same = np.asarray(self._same[kind], dtype=np.float64)
            block = result[kind] = {
                "n": int(np.count_nonzero(~np.isnan(same))),
                "excluded": dict(self._excluded[kind]),
                "unchanged": proportion_interval(same, self.confidence),
                "delta_probability": mean_interval(np.asarray(self._delta[kind]), self.confidence),
                "changed_to": {str(k): c for k, c in sorted(self._after[kind].items())},
            }
            if block["n"] == 0:
                block["reason"] = exclusion_reason(block["excluded"])
        return result

    def per_image(self) -> dict[str, list]:
        """Columns ablation_{artefact,region}_{same,delta}; NaN where excluded."""
        columns: dict[str, list] = {}
        for kind in KINDS:
            columns[f"ablation_{kind}_same"] = list(self._same[kind])
            columns[f"ablation_{kind}_delta"] = list(self._delta[kind])
        return columns
