"""The class each image is explained for (``--target``), by one rule for every part of the tool.

``Target.parse`` checks the option once, before any image is read; ``Target.resolve`` gives one
batch's classes. ``audit run`` takes its maps, its ablation's probability change, its
saliency-vs-ablation correlation and its Latent Shift strips from it, and ``audit
counterfactual`` its counterfactuals:

    predicted   t = argmax_k p_k(x), the model's prediction on the original image (default)
    label       t = the image's label; an image without one, or with a label that is not one
                of the model's outputs, is an error (no fallback to the prediction)
    INDEX       t = INDEX for every image, 0 <= INDEX < K
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from audit.errors import AuditError
from audit.metrics.base import ImageColumns, Metric

RULES = ("predicted", "label")


@dataclass(frozen=True)
class Target:
    """A parsed ``--target``: ``rule`` is "predicted", "label" or "index" (then ``index`` is set);
    ``classes`` is the model's number of outputs K."""

    rule: str
    classes: int
    index: int | None = None

    @classmethod
    def parse(cls, text: str, classes: int, option: str = "--target") -> Target:
        """``predicted``, ``label`` or a class index below ``classes``; AuditError otherwise."""
        text = str(text).strip()
        if text in RULES:
            return cls(text, classes)
        if text.isdigit() and int(text) < classes:
            return cls("index", classes, int(text))
        raise AuditError(f"{option} {text!r}: use predicted, label or a class index 0..{classes - 1}")

    def __str__(self) -> str:
        """The option as written: ``predicted``, ``label`` or the index."""
        return str(self.index) if self.rule == "index" else self.rule

    def describe(self, class_names: Sequence[str]) -> str:
        """The rule in words, for results.json and the report."""
        if self.rule == "predicted":
            return "the class predicted on the original image"
        if self.rule == "label":
            return "the image's label"
        name = class_names[self.index] if self.index is not None and self.index < len(class_names) else str(self.index)
        return f"class {self.index} ({name}) for every image"

    def resolve(self, paths: Sequence[str], labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
        """(N,) int64 classes of one batch; ``labels`` -1 where unknown, ``predictions`` the argmax."""
        if self.rule == "predicted":
            return np.asarray(predictions, dtype=np.int64).copy()
        if self.rule == "index":
            return np.full(len(paths), self.index, dtype=np.int64)
        labels = np.asarray(labels, dtype=np.int64)
        unknown = np.flatnonzero(labels < 0)
        if unknown.size:
            raise AuditError(f"{paths[unknown[0]]}: --target label needs a label for every image; label it or use --target predicted")
        outside = np.flatnonzero(labels >= self.classes)
        if outside.size:
            i = outside[0]
            raise AuditError(
                f"{paths[i]}: label {labels[i]} is not one of the model's {self.classes} outputs; --target label needs "
                f"the dataset's classes to be the model's (or use --target predicted)"
            )
        return labels.copy()


class ExplainedClasses(Metric):
    """What a run explained, for results.json's ``explained``: the rule in words, the count of
    images per explained class, and how many were explained for a class they are not predicted as.
    ``update(record)`` with the record's (N,) columns ``targets`` and ``predictions``."""

    name = "explained"

    def __init__(self, target: Target, class_names: Sequence[str]) -> None:
        self.target, self.class_names = target, list(class_names)
        self.add_state("by_class", {}, "sum")  # {str(class): images}
        self.add_state("not_predicted", 0, "sum")

    def update(self, record: ImageColumns) -> None:
        classes, predictions = np.asarray(record["targets"]), np.asarray(record["predictions"])
        for k in classes.tolist():
            self.by_class[str(k)] = self.by_class.get(str(k), 0) + 1
        self.not_predicted += int(np.count_nonzero(classes != predictions))

    def compute(self) -> dict:
        """{"rule", "by_class": {class name: images}, "not_predicted", "n"}."""
        def name(k: int) -> str:
            return self.class_names[k] if 0 <= k < len(self.class_names) else str(k)

        return {
            "rule": self.target.describe(self.class_names),
            "by_class": {name(int(k)): self.by_class[k] for k in sorted(self.by_class, key=int)},
            "not_predicted": self.not_predicted,
            "n": sum(self.by_class.values()),
        }
