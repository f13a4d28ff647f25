"""The training and validation splits as fine-tuning reads them, epoch after epoch.

A split is read once (this pass also counts the masks); when its decoded arrays fit in
``MEMORY_LIMIT`` bytes they are kept, so later epochs do not decode the files again (decoding
costs more than a training step on small images). A larger split is streamed from disk each
epoch, memory bounded by the batch size. Training order is a seeded permutation either way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np
import torch

from audit.data.batch import Batch
from audit.data.dataset import Dataset, MaskReport
from audit.data.prefetch import prefetch
from audit.finetune.masking import scrambled_pixels

MEMORY_LIMIT = 1 << 30


def concat(batches: list[Batch]) -> Batch:
    return Batch(
        paths=[p for b in batches for p in b.paths],
        **{f: np.concatenate([getattr(b, f) for b in batches]) for f in ("labels", "images", "artefact", "region", "has_artefact", "has_region")},
    )


def take(batch: Batch, index: np.ndarray) -> Batch:
    return Batch(
        paths=[batch.paths[i] for i in index],
        **{f: getattr(batch, f)[index] for f in ("labels", "images", "artefact", "region", "has_artefact", "has_region")},
    )


@dataclass
class Split:
    """A dataset read once; ``kept`` holds all its images when they fit in memory."""

    dataset: Dataset
    kept: Batch | None = None

    @classmethod
    def read(cls, dataset: Dataset, batch_size: int, limit: int = MEMORY_LIMIT) -> Split:
        height, width = dataset.size
        fits = len(dataset) * height * width * (4 * dataset.channels + 2) <= limit
        batches = list(dataset.batches(batch_size)) if fits else []
        return cls(dataset, concat(batches) if fits else None)

    def batches(self, batch_size: int, order: torch.Generator | None = None) -> Iterator[Batch]:
        """All images, in a random order drawn from ``order`` (file order without one)."""
        if self.kept is not None:
            n = len(self.kept)
            index = torch.randperm(n, generator=order).numpy() if order is not None else np.arange(n)
            for start in range(0, n, batch_size):
                yield take(self.kept, index[start : start + batch_size])
            return
        dataset = self.dataset
        if order is not None:
            entries = dataset.entries
            dataset = replace(dataset, entries=[entries[i] for i in torch.randperm(len(entries), generator=order).tolist()])
        yield from prefetch(dataset.batches(batch_size))

    def paths_with_masks(self, mode: str, batch_size: int) -> list[str]:
        found: list[str] = []
        for batch in self.batches(batch_size):
            _, has_mask = scrambled_pixels(batch, mode)
            found += [p for p, has in zip(batch.paths, has_mask.tolist()) if has]
        return found


def halves(dataset: Dataset) -> tuple[Dataset, Dataset]:
    """The validation set cut in two when no ``--test`` set is given: one half selects epochs
    and stops early, the other reports, so the verdict is not measured on the images that
    chose the model. Deterministic and stratified (our rule): within each label, in path
    order, images alternate between the halves, the first going to selection."""
    by_label: dict[int, list] = {}
    for entry in sorted(dataset.entries, key=lambda e: str(e[0])):
        by_label.setdefault(entry[1], []).append(entry)
    selection = [e for group in by_label.values() for e in group[0::2]]
    report = [e for group in by_label.values() for e in group[1::2]]
    return tuple(replace(dataset, entries=part, skipped=[], mask_report=MaskReport()) for part in (selection, report))
