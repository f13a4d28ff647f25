"""How batches reach the model: decoded and resized ahead of it, in worker processes.

``stream_batches`` reads a pass in chunks of ``batch_size`` consecutive entries
(``Dataset.read_chunk``: one whole stack of images and masks per chunk, so the per-image cost
of handing work to a process stays low). With ``workers`` ≥ 1 the chunks are read by that many
worker processes (``torch.utils.data.DataLoader`` over a map-style dataset of chunk indices,
which hands the chunks back in index order); with 0, by a background thread of this process
(``prefetch``). Either way the main process folds each chunk's bookkeeping (skipped images,
masks resized or unreadable, images with a mask) into the dataset as it arrives and yields each
chunk's readable images as one batch (``dataset.fold_chunks``), so the batches,
``Dataset.skipped`` and ``Dataset.mask_report`` of a pass are the same with any number of
workers. Rank-based metrics do not depend on batch boundaries anyway.

Memory is bounded by the read-ahead depth, never by the dataset size: at most ``PREFETCH``
chunks per worker are in flight (``prefetch_factor``), plus the batch being re-batched.

Default workers, for a model on a GPU: ``os.cpu_count() - 1`` (the main process keeps one core
to drive it), within [0, ``MAX_WORKERS``]; for a model on the CPU: 0 (``default_workers``), and never more than the pass has chunks after the first (a pass
of one chunk has nothing to overlap, so it is read in-process without starting a process).
An explicit ``--workers`` is capped at ``worker_limit()``, the larger of the CPU count and
``MAX_WORKERS`` (said once): each worker holds ``PREFETCH`` chunks, so ``--workers 1000`` on a
large dataset would otherwise start a thousand processes and hold two thousand batches.

Workers start with ``multiprocessing`` context ``CONTEXT``, "forkserver": a fork of the
audit's process would copy the threads' locks of whatever runs in it (torch's and
onnxruntime's thread pools, Ray's, CUDA's state) and can deadlock a worker; "forkserver" forks
each worker from a clean single-threaded server process that has imported ``audit.data``
once, so a worker starts in tens of milliseconds (measured: see ``tests/bench/scale_bench.py``)
while "spawn" re-imports numpy, torch and audit in every worker. Workers are not persistent
(each pass starts its own), and their errors come back in order: ``AuditError`` (strict mode,
a channel count the model does not take) is raised in the main process with its one-line
message; the consumer stopping early (an error in the model) shuts the workers down at once.

Pinned memory (``pin_memory``, asked for when the model is on CUDA): the images of each chunk
are copied into page-locked memory by the loader's pinning thread, so the copy to the device
can be non-blocking.
"""

from __future__ import annotations

import functools
import math
import multiprocessing
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from audit.data.batch import Batch
from audit.data.dataset import Chunk, Dataset, check_batch_size, fold_chunks
from audit.data.prefetch import prefetch
from audit.errors import AuditError

MAX_WORKERS = 8
PREFETCH = 2  # chunks read ahead per worker
CONTEXT = "forkserver"


def default_workers(model_on_gpu: bool = True) -> int:
    """For a model on a GPU: cores − 1 (the main process keeps one to drive the GPU), within
    [0, ``MAX_WORKERS``]. For a model on the CPU: 0, a reading thread. Measured on 2 cores,
    ResNet-18 at 224 px, 64 images, ``--method gradient``: 0.80-0.84x the bare forward+backward
    with the thread, 0.39-0.52x with one worker process, which takes a core from the model's
    own threads."""
    return min(MAX_WORKERS, max(0, (os.cpu_count() or 1) - 1)) if model_on_gpu else 0


def worker_limit() -> int:
    """The most workers a pass starts: the CPU count, and at least ``MAX_WORKERS``."""
    return max(MAX_WORKERS, os.cpu_count() or 1)


def workers_for(dataset: Dataset, batch_size: int, workers: int | None, model_on_gpu: bool = True) -> int:
    """The worker processes a pass uses: ``workers`` (None: ``default_workers(model_on_gpu)``) up to
    ``worker_limit()``, at most the number of chunks after the first (one chunk: 0, read
    in-process)."""
    wanted = default_workers(model_on_gpu) if workers is None else workers
    if wanted < 0:
        raise AuditError(f"--workers {wanted}: must be 0 (read in this process) or more")
    if wanted > worker_limit():
        _capped(wanted, worker_limit())
        wanted = worker_limit()
    return min(wanted, math.ceil(len(dataset.entries) / batch_size) - 1)


@functools.lru_cache(maxsize=None)
def _capped(wanted: int, limit: int) -> None:
    """Say once per process that ``--workers wanted`` was capped."""
    from audit.device import warn

    warn(f"--workers {wanted}: using {limit} worker processes (this machine's CPU count, at least {MAX_WORKERS}); "
         f"more would only hold more batches in memory")


@dataclass
class _Failed:
    """An ``AuditError`` raised in a worker, handed back in order to be raised again here with
    its one-line message (the loader would wrap it in the worker's traceback)."""

    message: str


class _Chunks(torch.utils.data.Dataset):
    """Chunk ``i`` of a pass: entries [i·batch_size, (i+1)·batch_size) read in a worker."""

    def __init__(self, dataset: Dataset, batch_size: int) -> None:
        self.dataset = dataset
        self.batch_size = batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.dataset.entries) / self.batch_size)

    def __getitem__(self, index: int) -> _Read:
        start = index * self.batch_size
        try:
            return _Read(self.dataset.read_chunk(self.dataset.entries[start : start + self.batch_size]))
        except AuditError as error:
            return _Read(_Failed(str(error)))


@dataclass
class _Read:
    """What a worker hands back; ``pin_memory`` is what the loader's pinning thread calls."""

    result: Chunk | _Failed

    def pin_memory(self) -> _Read:
        if isinstance(self.result, Chunk) and self.result.batch is not None:
            self.result.batch.images = _pinned(self.result.batch.images)
        return self


def _pinned(images: np.ndarray) -> np.ndarray:
    """A copy of ``images`` in page-locked memory (the array keeps its pinned tensor alive)."""
    return torch.from_numpy(images).pin_memory().numpy()


def _keep(item: _Read) -> _Read:
    """The loader's ``collate_fn``: each item is already a whole chunk."""
    return item


def _context() -> multiprocessing.context.BaseContext:
    context = multiprocessing.get_context(CONTEXT)
    if CONTEXT == "forkserver":
        context.set_forkserver_preload([__name__])  # imported once by the server, not per worker
    return context


def _chunks_from_workers(dataset: Dataset, batch_size: int, workers: int, pin: bool) -> Iterator[Chunk]:
    loader = DataLoader(
        _Chunks(dataset, batch_size),
        batch_size=None,
        collate_fn=_keep,
        num_workers=workers,
        prefetch_factor=PREFETCH,
        persistent_workers=False,
        pin_memory=pin,
        multiprocessing_context=_context(),
    )
    reads = iter(loader)
    try:
        for read in reads:
            if isinstance(read.result, _Failed):
                raise AuditError(read.result.message)
            yield read.result
    finally:
        reads._shutdown_workers()  # at once, also when the consumer stops early


def stream_batches(dataset: Dataset, batch_size: int, *, workers: int | None = None, pin_memory: bool = False) -> Iterator[Batch]:
    """The readable images of each window of ``batch_size`` listed images, a batch each, in order, read
    ahead by ``workers`` processes (None: the default rule; 0: a thread of this process). See
    the module docstring. ``pin_memory``: the model is on a GPU: the images are pinned, and by
    default read by worker processes (``default_workers``)."""
    check_batch_size(batch_size)
    count = workers_for(dataset, batch_size, workers, model_on_gpu=pin_memory)
    pin = pin_memory and torch.cuda.is_available()
    if count == 0:
        batches = dataset.batches(batch_size)
        yield from prefetch(_pin_all(batches) if pin else batches)
        return
    dataset.start_pass()
    yield from fold_chunks(dataset, _chunks_from_workers(dataset, batch_size, count, pin))


def _pin_all(batches: Iterator[Batch]) -> Iterator[Batch]:
    for batch in batches:
        batch.images = _pinned(batch.images)
        yield batch
