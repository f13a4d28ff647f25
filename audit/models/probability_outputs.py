"""Does the model already output probabilities? Then ``--multilabel``'s sigmoid, or the default
softmax, is applied a second time and the probabilities mean nothing.

Streamed over every logit row of a run (declared states: a count, the extrema, the worst row
sum; ``update``, ``compute``, ``merge``). Two cases are named, both after the whole dataset, never from a few rows:

- ``--multilabel`` and every output in [0, 1]: a sigmoid is applied twice, σ(σ(z)) ∈ [0.5, 0.73].
- softmax and every row in [0, 1] summing to 1 (within ``ROW_SUM_TOLERANCE``): softmax is applied
  twice and flattens every row towards 1/K (the ranking and the AUROC stay the same).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audit.metrics.base import ImageColumns, Metric

#: How far from 1 a row of probabilities may sum (float32 softmax rounding is ~1e-7 per output).
ROW_SUM_TOLERANCE = 1e-4


class ProbabilityOutputs(Metric):
    """``update(record)`` with the record's (N, K) ``logits``."""

    name = "probability_outputs"

    def __init__(self) -> None:
        self.add_state("rows", 0, "sum")
        self.add_state("low", float("inf"), "min")
        self.add_state("high", float("-inf"), "max")
        self.add_state("worst_row_sum_error", 0.0, "max")

    def update(self, record: ImageColumns) -> None:
        values = np.asarray(record["logits"], dtype=np.float64)
        if values.size == 0:
            return
        self.rows += len(values)
        self.low = min(self.low, float(values.min()))
        self.high = max(self.high, float(values.max()))
        self.worst_row_sum_error = max(self.worst_row_sum_error, float(np.abs(values.sum(axis=1) - 1).max()))

    def compute(self, multilabel: bool, classes: int, model: Path) -> list[str]:
        """The warnings for results.json (empty when the outputs look like logits)."""
        in_unit_range = self.rows > 0 and self.low >= 0.0 and self.high <= 1.0
        if not in_unit_range:
            return []
        if multilabel:
            return [f"{model}: every output lies in [0, 1] ({self.rows} images): the model seems to apply a sigmoid "
                    f"already and --multilabel applied another, so probabilities lie in [0.5, 0.73]; export the logits"]
        if classes >= 2 and self.worst_row_sum_error <= ROW_SUM_TOLERANCE:
            return [f"{model}: every output row lies in [0, 1] and sums to 1 ({self.rows} images): the model seems to "
                    f"apply a softmax already and audit applied another, which flattens probabilities towards 1/{classes} "
                    f"(rankings and AUROC are unchanged); export the logits"]
        return []
