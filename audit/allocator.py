"""Let freed memory be reused instead of handed back to the OS at every free (glibc only).

glibc serves an allocation above its mmap threshold (dynamic, at most 32 MiB) with a fresh
``mmap`` and returns it with ``munmap`` when it is freed. A batch's activations are above it
(64×32×64×64 float32 is 32 MiB at 128 px), so every forward and backward pass maps new pages
and faults each of them in again. Measured on 2000 images at 128 px: 1.8 million minor page
faults and 22% of the CPU time spent in the kernel. With the mmap and trim thresholds at 1 GiB
freed blocks are reused: the bare forward+backward ran 25–40% faster, peak memory within 5%.

The command line calls ``reuse_freed_memory`` once at start; as a library, ``audit`` leaves
the process's allocator alone. Elsewhere than glibc (macOS, musl, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def reuse_freed_memory(threshold: int = 1 << 30) -> bool:
    """Raise glibc's mmap and trim thresholds to ``threshold`` bytes; False where that is not possible."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # no C library by that name, or no mallopt in it
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(_M_MMAP_THRESHOLD, threshold) == 1 and mallopt(_M_TRIM_THRESHOLD, threshold) == 1
