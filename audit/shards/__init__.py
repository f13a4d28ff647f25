"""Splitting a run into shards (contiguous ranges of the dataset listing) and merging them back."""

from __future__ import annotations

from audit.errors import AuditError


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` → (I, N) with 1 <= I <= N; AuditError otherwise."""
    index, slash, count = str(text).strip().partition("/")
    digits = all(part.isascii() and part.isdigit() for part in (index, count))  # not "²", "١"
    if not slash or not digits or not 1 <= int(index) <= int(count):
        raise AuditError(f"--shard {text!r}: write I/N with 1 <= I <= N, e.g. --shard 1/4")
    return int(index), int(count)


def batch_count(total: int, batch: int) -> int:
    """⌈total / batch⌉: the batches of a pass over ``total`` listed images."""
    return -(-total // batch)


def shard_range(total: int, index: int, count: int, batch: int = 1) -> range:
    """The ``index``-th (1-based) of ``count`` contiguous, unpadded ranges of ``range(total)``,
    cut at batch boundaries: the ⌈total/batch⌉ batches of ``batch`` listed images are shared out
    (counts differ by at most one, the first ranges one batch larger), so every shard's batches
    are the whole run's batches and its maps the same to the last bit (a map depends on the
    batch it was computed in, in float rounding)."""
    size, larger = divmod(batch_count(total, batch), count)
    start = (index - 1) * size + min(index - 1, larger)
    stop = start + size + (index <= larger)
    return range(min(start * batch, total), min(stop * batch, total))
