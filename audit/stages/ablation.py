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

This stage runs the forward passes and emits per-image columns (``ablation_columns``); the
metric ``audit.metrics.ablation.ArtefactAblation`` accumulates them. Images without the mask
file or with an empty mask are excluded from that ablation, with the reason as a column, and
counted by the metric. Summaries (the metric): the share of unchanged predictions with a 95% Clopper–Pearson interval
(a proportion of images: ``intervals.proportion_interval``; 0 of 30 changed gives 88.4%–100%
unchanged, not a point), the mean delta with a 95% Student t-interval
(``intervals.mean_interval``), and how many changed predictions went to each class (Pfau
report the share moved to "Other").
"""

from __future__ import annotations

import math

import numpy as np
import torch

from audit.data.batch import Batch
from audit.metrics.base import mask_exclusion
from audit.models.classifier import Classifier

KINDS = ("artefact", "region")


def ablate(images: np.ndarray, masks: np.ndarray, keep: bool) -> np.ndarray:
    """Copy of (N, H, W, C) ``images`` with the masked pixels (``keep=False``) or the pixels
    outside the mask (``keep=True``) set to each image's per-channel mean."""
    images = np.asarray(images, dtype=np.float32)
    means = images.mean(axis=(1, 2), keepdims=True)  # (N, 1, 1, C), over the whole image
    replace = ~masks if keep else masks
    return np.where(replace[..., None], means, images)


def ablation_columns(batch: Batch, classifier: Classifier, probabilities: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    """Ablate, forward, compare: per kind (N,) columns ``<kind>_same`` (1.0/0.0), ``<kind>_delta``
    (p_t(ablated) − p_t(original)), ``<kind>_new_class`` (argmax after the ablation), all NaN
    (−1 for the class) where excluded, and ``<kind>_excluded`` (the reason, "" where ablated).

    ``probabilities`` is the (N, K) output on the original images (its argmax is the
    prediction), ``target`` the (N,) explained classes. One extra forward pass per kind on the
    eligible images of the batch.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    target = np.asarray(target, dtype=np.int64)
    n = len(batch)
    if probabilities.shape[0] != n or target.shape != (n,):
        raise ValueError(f"probabilities {probabilities.shape} and target "
                         f"{target.shape} do not match a batch of {n} images")
    predictions = probabilities.argmax(axis=1)
    columns: dict[str, np.ndarray] = {}
    for kind, masks, has_mask in (("artefact", batch.artefact, batch.has_artefact), ("region", batch.region, batch.has_region)):
        same, delta, new_class = np.full(n, math.nan), np.full(n, math.nan), np.full(n, -1, dtype=np.int64)
        excluded = np.array([mask_exclusion(kind, bool(has_mask[i]), masks[i]) or "" for i in range(n)], dtype=object)
        eligible = excluded == ""
        if eligible.any():
            ablated = ablate(batch.images[eligible], masks[eligible], keep=kind == "region")
            logits = classifier.logits(classifier.to_input(ablated))
            after = classifier.probabilities(logits).to(torch.float64).cpu().numpy()
            rows = np.arange(len(after))
            explained = target[eligible]
            new_class[eligible] = after.argmax(axis=1)
            same[eligible] = (new_class[eligible] == predictions[eligible]).astype(np.float64)
            delta[eligible] = after[rows, explained] - probabilities[eligible][rows, explained]
        columns.update({f"{kind}_same": same, f"{kind}_delta": delta, f"{kind}_new_class": new_class,
                        f"{kind}_excluded": excluded.astype(str)})
    return columns
