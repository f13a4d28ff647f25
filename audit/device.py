"""Where the audit computes (``--device``), in what precision (``--precision``), and what it
does when the GPU runs out of memory.

Devices: ``auto`` (CUDA device 0 when torch sees a GPU, else the CPU), ``cpu``, ``cuda`` (device
0) or ``cuda:N``. Asking for a GPU that is not there is a one-line error, not a silent CPU run.

Precisions: ``fp32`` (default), ``bf16`` or ``fp16`` for the forward and backward passes of the
model (``torch.autocast`` on the device: convolutions and matrix products in the reduced type,
reductions and the rest in float32, as torch's autocast op lists say). The rule: bf16 runs on the
CPU and on GPUs that support it (``torch.cuda.is_bf16_supported``); fp16 only on CUDA, because
CPU autocast in float16 is slow and fp16 gradients underflow without loss scaling, which a
saliency map cannot use. Logits and maps leave the autocast region as float32 and every metric
is computed on float32 maps (``audit.saliency.reduce``).

Out of memory: ``in_halves`` runs a per-batch function on a batch and, when CUDA runs out of
memory, on its two halves (recursively, down to one image), saying so once; at one image it is
a one-line error naming the batch size that failed.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import numpy as np
import torch

from audit.errors import AuditError

DEVICES = "auto, cpu, cuda or cuda:N"
PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

T = TypeVar("T")


def parse_device(text: str) -> torch.device:
    """``--device`` → a torch device, checked against the GPUs torch sees (module docstring)."""
    value = str(text).strip().lower()
    if value == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if value == "cpu":
        return torch.device("cpu")
    kind, colon, index = value.partition(":")
    if kind != "cuda" or (colon and not index.isdigit()):
        raise AuditError(f"--device {text}: give {DEVICES}, e.g. --device cuda:0")
    if not torch.cuda.is_available():
        raise AuditError(f"--device {text}: torch sees no CUDA GPU on this machine; use --device cpu (or auto), "
                         f"or install a CUDA build of torch")
    number = int(index) if colon else 0
    count = torch.cuda.device_count()
    if number >= count:
        raise AuditError(f"--device {text}: torch sees {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}; "
                         f"give one of those")
    return torch.device("cuda", number)


def requested(device: str | None, precision: str | None, config: Path | None = None,
              cwd: Path | None = None) -> tuple[str, str, Path | None]:
    """(device text, precision text, the config file they came from or None): ``--device`` /
    ``--precision`` when given, else the ``device`` / ``precision`` keys of the config file
    (``--config``, else audit.toml or pyproject.toml's [tool.audit] in ``cwd``), else ``auto`` /
    ``fp32``; not checked against this machine (a Ray task checks them on its own node). The
    precision is read in any case, as the device is (``FP32`` is ``fp32``)."""
    from audit.report.gate.config import run_settings

    source, table = run_settings(config, cwd or Path.cwd())
    from_file = source if (device is None and "device" in table or precision is None and "precision" in table) else None
    precision_text = precision if precision is not None else str(table.get("precision", "fp32"))
    return (device if device is not None else str(table.get("device", "auto")), precision_text.strip().lower(), from_file)


def resolve(device: str | None, precision: str | None, config: Path | None = None,
            cwd: Path | None = None) -> tuple[torch.device, str]:
    """The run's device and precision (``requested``), checked on this machine; a bad value in
    the file is a one-line error that names the file."""
    device_text, precision_text, source = requested(device, precision, config, cwd)
    try:
        chosen = parse_device(device_text)
        return chosen, check_precision(precision_text, chosen)
    except AuditError as exc:
        if source:
            raise AuditError(f"{source}: {exc}") from exc
        raise


def check_precision(precision: str, device: torch.device) -> str:
    """``--precision`` on ``device``, or a one-line error with the fix (module docstring)."""
    if precision not in PRECISIONS:
        raise AuditError(f"--precision {precision}: give one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise AuditError(f"--precision fp16 needs a CUDA device (the run is on {device}); use --precision bf16 "
                         f"or fp32 on the CPU")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise AuditError(f"--precision bf16: {torch.cuda.get_device_name(device)} does not support bfloat16; "
                         f"use --precision fp16 or fp32")
    return precision


def precision_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on ``device`` in the reduced type of ``precision``; nothing for fp32."""
    check_precision(precision, device)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def describe(device: torch.device, precision: str) -> dict[str, Any]:
    """results.json ``run.device`` / ``run.gpu`` / ``run.precision``: the device as text
    ("cpu", "cuda:0"), the GPU's name (None on the CPU) and the precision."""
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {"device": str(device), "gpu": gpu, "precision": precision}


def device_line(device: torch.device, precision: str) -> str:
    """What a command prints before it starts: 'device: cuda:0 (NVIDIA H200), precision fp32'."""
    gpu = describe(device, precision)["gpu"]
    return f"device: {device}{f' ({gpu})' if gpu else ''}, precision {precision}"


#: what the messages of other out-of-memory errors say (cuDNN's RuntimeError, onnxruntime's CUDA
#: provider, whose exceptions are not RuntimeErrors: "Failed to allocate memory for requested buffer")
OUT_OF_MEMORY = ("out of memory", "failed to allocate memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's out-of-memory error: ``torch.OutOfMemoryError``, or an error that says so (not
    our own ``AuditError``, which has already said it)."""
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, Exception) and not isinstance(exc, AuditError)
        and any(words in str(exc).lower() for words in OUT_OF_MEMORY))


def out_of_memory_error(size: int | None, halved: bool = False) -> AuditError:
    """The one-line error for a batch of ``size`` images that did not fit (``halved``: down to
    one; None: the command's default batch size)."""
    still = ", and still on one image after halving it" if halved else ""
    at = "the default batch size" if size is None else f"batch size {size}"
    smaller = "" if size is None else f" (e.g. --batch-size {max(1, size // 2)})"
    return AuditError(f"CUDA out of memory at {at}{still}; give a smaller --batch-size{smaller}, fewer steps or "
                      f"samples per method (-o), or --device cpu")


@contextlib.contextmanager
def out_of_memory_as_error(size: int | None) -> Iterator[None]:
    """CUDA out of memory inside the block becomes ``out_of_memory_error(size)`` (exit 2)."""
    try:
        yield
    except Exception as exc:
        if is_out_of_memory(exc):
            raise out_of_memory_error(size) from exc
        raise


def warn(message: str) -> None:
    print(f"audit: warning: {message}", file=sys.stderr)


class Halving:
    """Says once (per object) that a batch was halved (``NOTICE``: once per process, which is
    once per ``audit`` command)."""

    def __init__(self, say: Callable[[str], None] = warn) -> None:
        self.said = False
        self.say = say

    def __call__(self, size: int) -> None:
        if not self.said:
            self.said = True
            self.say(f"CUDA out of memory on a batch of {size} images: splitting such batches in halves "
                      f"(give a smaller --batch-size to avoid the retries)")


NOTICE = Halving()


def in_halves(fn: Callable[[slice], T], size: int, *, step: int | None = None,
              on_halve: Callable[[int], None] | None = None) -> T:
    """fn(slice(0, size)), or, on CUDA out of memory, fn over the two halves [0, ⌈n/2⌉) and
    [⌈n/2⌉, n) (recursively, down to one image), joined along the first axis (numpy arrays or
    tensors). ``step`` (a fixed-batch model's ``batch_limit``) caps the first pieces. ``fn``
    must have no side effect before it returns, so a retried piece is never counted twice.
    ``on_halve(n)`` (default ``NOTICE``) is told the size of each batch that was split; at one
    image the error is ``out_of_memory_error``."""
    try:
        pieces = list(_pieces(fn, 0, size, step or size, on_halve or NOTICE))
    except _OneImage as exc:
        raise out_of_memory_error(size, halved=True) from exc.__cause__
    if len(pieces) == 1:
        return pieces[0]
    if isinstance(pieces[0], torch.Tensor):
        return torch.cat(pieces)  # type: ignore[return-value]
    return np.concatenate(pieces)  # type: ignore[return-value]


def _pieces(fn: Callable[[slice], T], start: int, stop: int, step: int,
            on_halve: Callable[[int], None]) -> Iterator[T]:
    for begin in range(start, stop, step):
        end = min(begin + step, stop)
        try:
            result = fn(slice(begin, end))
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            if end - begin == 1:
                raise _OneImage() from exc
            _free_cache()
            on_halve(end - begin)
            middle = begin + (end - begin + 1) // 2
            yield from _pieces(fn, begin, middle, middle - begin, on_halve)
            yield from _pieces(fn, middle, end, end - middle, on_halve)
            continue
        yield result


class _OneImage(Exception):
    """Out of memory on a single image: nothing left to halve."""


def _free_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
