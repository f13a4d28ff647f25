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


def shard_range(total: int, index: int, count: int) -> range:
    """The ``index``-th (1-based) of ``count`` contiguous, unpadded ranges of ``range(total)``:
    sizes differ by at most one, the first ``total % count`` ranges one larger."""
    size, larger = divmod(total, count)
    start = (index - 1) * size + min(index - 1, larger)
    return range(start, start + size + (index <= larger))
