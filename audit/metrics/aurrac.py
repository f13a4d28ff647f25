"""Area under the response rate accuracy curve (Pfau et al. 2019, Appendix B and Figure 2).

Sort the N labelled images that have an artefact mask by their artefact saliency s (m(X) or
n(X), see ``global_saliency``), least salient first. For response rate r_k = k/N keep the k
least artefact-salient images; acc(k) is the accuracy on them (c_i ∈ {0, 1}, correctness of
the i-th image in that order):

    acc(k) = (1/k) Σ_{i ≤ k} c_i,     AURRAC = ∫_0^1 acc(⌈rN⌉) dr = (1/N) Σ_{k=1}^{N} acc(k).

The curve is a step function of r (keeping ⌈rN⌉ images), so its area on (0, 1] is exactly the
mean of the N accuracies; no trapezoid (which would also leave (0, 1/N] out).

The paper calls AURRAC "equivalent to weighing the model's 1/0 loss on a given image by its
percentile rank saliency on ink". Exchanging the sums makes that precise:

    AURRAC = (1/N) Σ_i c_i · w_i,   w_i = Σ_{k=i}^{N} 1/k = H_N − H_{i−1}   (H harmonic numbers),

a weight that depends only on the rank and decreases with it (≈ −ln((i − ½)/N)); Σ_i w_i = N,
so AURRAC = accuracy when correctness is unrelated to the ranking (a flat curve) and above it
when the failures are the most artefact-salient images (the map predicts failure).

Ties (our choice): images with equal s have no order, so acc(k) is averaged over every order
of each tied block. That average is exact and cheap: within a tied block of size b holding c
correct images, the first j of a random order hold j·c/b correct images in expectation. So the
result does not depend on path order or batching, and a constant score gives a flat curve.

Kendall's τ between r and acc, as the paper reports for Figure 2, over the paper's percentile
points: "Leftmost tick corresponds to the 10th percentile of images with least saliency on
ink", so the deciles r = 0.1, 0.2, …, 1.0, each at acc(⌈rN⌉) (distinct k only, so min(10, N)
points: ``kendall_points``). The paper does not name the variant; we report τ-b (scipy's
default; τ-a when no two accuracies tie), and scipy's two-sided p-value (exact without ties,
the normal approximation with them). Over all N curve points instead, the p-value shrinks as
N grows though the curve's shape does not change; even over ten points it treats them as
independent, which they are not (each acc(k) holds the images of the points before it), so
read it as descriptive. Accuracies are compared to 12 decimals, so that equal accuracies
reached by different float sums tie.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from audit.errors import AuditError
from audit.metrics.base import MapBatch, Metric, scored_images
from audit.metrics.global_saliency import peak_count
from audit.metrics.intervals import BINOMIAL_INTERVAL, json_number, proportion_interval

MAX_CURVE_POINTS = 101
KENDALL_RESPONSE_RATES = np.arange(1, 11) / 10  # Pfau et al., Fig. 2: the deciles


def response_rate_curve(scores: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(r, acc): r_k = k/N and acc(k) for k = 1..N, least score first, ties averaged."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    sorted_correct = np.asarray(correct, dtype=np.float64)[order]
    n = sorted_scores.size
    block_starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    block_sizes = np.diff(np.r_[block_starts, n])
    block_correct = np.add.reduceat(sorted_correct, block_starts)
    correct_before_block = np.r_[0.0, np.cumsum(block_correct)[:-1]]
    block_of = np.repeat(np.arange(block_starts.size), block_sizes)
    k = np.arange(1, n + 1)
    expected_correct = correct_before_block[block_of] + (k - block_starts[block_of]) * (
        block_correct / block_sizes)[block_of]
    return k / n, expected_correct / k


def downsample_curve(r: np.ndarray, accuracy: np.ndarray, max_points: int = MAX_CURVE_POINTS
                     ) -> dict[str, list]:
    """At most ``max_points`` curve points at r ≈ 0, 1/(m−1), …, 1 (always k = 1 and k = N)."""
    n = r.size
    if n <= max_points:
        keep = np.arange(n)
    else:
        steps = np.arange(max_points) * n / (max_points - 1)
        keep = np.unique(np.maximum(1, np.ceil(steps).astype(int))) - 1
    return {"r": r[keep].tolist(), "accuracy": accuracy[keep].tolist()}


def percentile_points(r: np.ndarray, accuracy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The curve at the deciles, acc(⌈rN⌉) for r = 0.1, …, 1.0, distinct k only."""
    n = r.size
    k = np.unique(np.ceil(np.round(KENDALL_RESPONSE_RATES * n, 9)).astype(int))
    return r[k - 1], accuracy[k - 1]


def kendall(r: np.ndarray, accuracy: np.ndarray) -> dict:
    """{"kendall_tau", "kendall_p_value", "kendall_points"} over the percentile points, with
    "kendall_reason" where τ is undefined."""
    r, accuracy = percentile_points(r, accuracy)
    accuracy = np.round(accuracy, 12)
    result: dict = {"kendall_tau": None, "kendall_p_value": None, "kendall_points": int(r.size)}
    if r.size < 2:
        result["kendall_reason"] = "one image: a single curve point"
    elif np.all(accuracy == accuracy[0]):
        result["kendall_reason"] = "the accuracy is the same at every percentile point (a flat curve)"
    else:
        tau, p_value = stats.kendalltau(r, accuracy)
        result.update(kendall_tau=json_number(tau), kendall_p_value=json_number(p_value))
    return result


class Aurrac(Metric):
    """AURRAC, plain accuracy (with a Clopper–Pearson interval), their difference, Kendall's τ
    over the deciles and the curve."""

    name = "aurrac"

    def __init__(self, score: str = "mean", percentile: float = 98.0, absolute: bool = False,
                 confidence: float = 0.95) -> None:
        """score: "mean" orders by m(X), "peak" by n(X) at ``percentile``; ``absolute`` uses |g|;
        confidence: level of the plain accuracy's Clopper–Pearson interval."""
        if score not in ("mean", "peak"):
            raise AuditError(f"AURRAC score {score!r} is unknown; use 'mean' or 'peak'")
        if not 0.0 < percentile < 100.0:
            raise AuditError(f"peak percentile {percentile} is outside (0, 100); use e.g. 98")
        self.score = score
        self.percentile = percentile
        self.absolute = absolute
        self.confidence = confidence
        self.add_state("paths", [], "cat", dtype=str)
        self.add_state("scores", [], "cat")
        self.add_state("correct", [], "cat", dtype=bool)
        self.add_state("excluded", {"no_artefact_mask": 0, "empty_artefact_mask": 0, "unlabelled": 0}, "sum")

    def update(self, batch: MapBatch) -> None:
        self.paths.extend(batch.paths)
        scores = np.full(len(batch), math.nan)
        scored = scored_images(batch, self.excluded, labelled_only=True)
        if scored.any():
            kernels = batch.kernels
            flat, inside = kernels.float64(batch.rows("maps", scored)), batch.rows("artefact", scored)
            if self.absolute:
                flat = abs(flat)
            if self.score == "mean":
                chosen = kernels.mean_on_rows(flat, inside)
            else:
                chosen = kernels.peak_on_rows(flat, inside, peak_count(flat.shape[1], self.percentile))
            scores[scored] = kernels.to_host([chosen])
        self.scores.extend(scores.tolist())
        self.correct.extend((scored & np.asarray(batch.correct, dtype=bool)).tolist())

    def _eligible(self) -> tuple[np.ndarray, np.ndarray]:
        scores = np.asarray(self.scores, dtype=np.float64)
        defined = ~np.isnan(scores)
        return scores[defined], np.asarray(self.correct, dtype=bool)[defined]

    def compute(self) -> dict:
        scores, correct = self._eligible()
        result: dict = {
            "name": self.name,
            "score": "mean saliency m(X)" if self.score == "mean"
            else f"peak share n(X) at percentile {self.percentile}",
            "map": "absolute value |g|" if self.absolute else "as given (signed)",
            "ties": "accuracy averaged over all orders of tied images",
            "n": int(scores.size),
            "excluded": dict(self.excluded),
            "value": None, "accuracy": None, "accuracy_ci95": None, "interval": BINOMIAL_INTERVAL,
            "difference": None, "kendall_tau": None, "kendall_p_value": None, "kendall_points": 0,
            "curve": {"r": [], "accuracy": []},
        }
        if scores.size == 0:
            result["reason"] = "no labelled image with a non-empty artefact mask"
            return result
        r, accuracy = response_rate_curve(scores, correct)
        value, plain = float(accuracy.mean()), proportion_interval(correct, self.confidence)
        result.update(value=value, accuracy=plain["mean"], difference=value - plain["mean"],
                      accuracy_ci95=[plain["ci_low"], plain["ci_high"]],
                      curve=downsample_curve(r, accuracy), **kendall(r, accuracy))
        return result

    def per_image(self) -> dict[str, list]:
        """Percentile rank of each image's artefact saliency (mid-rank / N; ties share it)."""
        scores = np.asarray(self.scores, dtype=np.float64)
        ranks = np.full(scores.size, math.nan)
        defined = ~np.isnan(scores)
        if defined.any():
            ranks[defined] = stats.rankdata(scores[defined]) / np.count_nonzero(defined)
        return {"aurrac_percentile_rank": ranks.tolist()}
