"""How batches reach the model: read ahead of it so that decoding overlaps the model's work."""

from __future__ import annotations

from typing import Any, Iterator

from audit.data.batch import Batch
from audit.data.prefetch import prefetch


def stream_batches(dataset: Any, batch_size: int, *, workers: int | None = None, pin_memory: bool = False) -> Iterator[Batch]:
    """The dataset's batches in order, read ahead in a background thread."""
    return prefetch(dataset.batches(batch_size))
