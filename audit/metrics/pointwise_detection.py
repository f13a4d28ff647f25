"""Pointwise detection (Durand et al. 2017, WILDCAT; Aggarwal et al. 2020, Appendix B): does the
map's peak, ranked by the classifier's confidence, detect the region over the dataset?

Per image: the predicted point is the maximum of the map (of |g|, as the pointing game ranks
when ``absolute``), its score the classifier's probability of the explained class (``--target``;
softmax, or the sigmoid under ``--multilabel``), and it is a hit when the point lies in the
image's region mask (for boxes: inside a box, ``audit.data.boxes``). Unlike the pointing game,
this is scored over the dataset, as detection's mAP is: the predictions of all images ranked by
score, each image one prediction, a hit a true positive and a miss a false positive, recall
over the P images with a non-empty region (a region whose image's point missed it is a false
negative). Images without a region (no mask, or an empty one) are negatives, as in the paper:
their prediction can only be a false positive.

    AP = Σ_k (R_k − R_{k−1}) · P_k,   R_k = TP_k / P,   P_k = TP_k / k,

over the distinct scores, highest first (tied scores form one threshold, as scikit-learn's
``average_precision_score``). Since the hits are at most the P positives, this equals
``average_precision_score(hits, scores) · hits / P`` (the tests check that), and 0 without a hit.

Ties in the map (our choice): the first maximal pixel in row-major order (numpy's and torch's
argmax); a rule that never depends on the batch (tied pixels are bit-equal, README "Stable
ranking"). A constant map (every pixel tied) points nowhere: a miss, never a hit. The pointing
game instead gives a tied image the share of its maxima inside the region; a hit here must be
0 or 1 to be ranked. Undefined (null, with the reason) when no image has a non-empty region.
"""

from __future__ import annotations

import numpy as np
import torch

from audit.metrics.base import MapBatch, Metric, mask_exclusion

SCORE = "probability of the target class"


def peak_hits(maps: np.ndarray | torch.Tensor, regions: np.ndarray | torch.Tensor) -> np.ndarray:
    """(E,) bool: the first maximal pixel of each (E, N) row of ``maps`` lies in ``regions``'s
    row, and the row is not constant. numpy rows, or tensors on any device."""
    if isinstance(maps, torch.Tensor):
        peak = maps.argmax(dim=1, keepdim=True)
        pointed = maps.amax(dim=1) > maps.amin(dim=1)
        return (regions.gather(1, peak)[:, 0] & pointed).cpu().numpy()
    peak = maps.argmax(axis=1)[:, None]
    return np.take_along_axis(regions, peak, axis=1)[:, 0] & (maps.max(axis=1) > maps.min(axis=1))


def detection_ap(hits: np.ndarray, scores: np.ndarray, positives: int) -> float:
    """AP of predictions ``scores`` with true positives ``hits`` against ``positives`` regions
    (module docstring); ties in the scores form one threshold."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    ranked, true = np.asarray(scores, dtype=np.float64)[order], np.asarray(hits, dtype=np.float64)[order]
    last = np.r_[ranked[1:] != ranked[:-1], True]  # the last prediction of each tied block
    true_positives = np.cumsum(true)[last]
    precision = true_positives / np.arange(1, len(ranked) + 1)[last]
    recall_steps = np.diff(np.r_[0.0, true_positives]) / positives
    return float(np.sum(recall_steps * precision))


class PointwiseDetection(Metric):
    """mAP of the map's peak as a detection of the region, ranked by the target's probability.

    absolute: the peak of |g| (default, as the pointing game) or of g as given.
    """

    name = "pointwise_detection"

    def __init__(self, absolute: bool = True) -> None:
        self.absolute = absolute
        self.add_state("paths", [], "cat", dtype=str)
        self.add_state("scores", [], "cat")
        self.add_state("hits", [], "cat", dtype=np.int64)
        self.add_state("positive", [], "cat", dtype=bool)
        self.add_state("excluded", {"no_region_mask": 0, "empty_region_mask": 0}, "sum")

    def update(self, batch: MapBatch) -> None:
        positive = np.zeros(len(batch), dtype=bool)
        for i in range(len(batch)):
            reason = mask_exclusion("region", bool(batch.has_region[i]), batch.region[i])
            positive[i] = reason is None
            if reason is not None:
                self.excluded[reason] += 1
        everything = np.ones(len(batch), dtype=bool)
        maps = batch.rows("maps", everything)
        hits = peak_hits(abs(maps) if self.absolute else maps, batch.rows("region", everything))
        self.paths.extend(batch.paths)
        self.scores.extend(np.asarray(batch.probabilities, dtype=np.float64).tolist())
        self.hits.extend((hits & positive).astype(int).tolist())
        self.positive.extend(positive.tolist())

    def compute(self) -> dict:
        hits, positives = np.asarray(self.hits, dtype=np.int64), int(np.count_nonzero(self.positive))
        result: dict = {"map": None, "images": len(self.paths), "positives": positives, "hits": int(hits.sum()),
                        "score": SCORE}
        if positives == 0:
            counts = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in self.excluded.items() if v) or "no images"
            result["reason"] = f"no image has a non-empty region mask, so there is nothing to detect ({counts})"
        else:
            result["map"] = detection_ap(hits, np.asarray(self.scores), positives)
        return result

    def per_image(self) -> dict[str, list]:
        return {"pointwise_hit": list(self.hits)}
