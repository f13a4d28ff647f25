"""In-memory conversion of TorchScript models to ONNX, so that hook-based methods get a named,
hook-able twin (hooks cannot be registered on a loaded TorchScript module; gradient methods use
the module itself). ``exported_program_to_onnx`` is kept for the tests that compare the twin of a
dynamo export with eager torch; torch.export files are audited through their own module tree
(``audit.models.native``).

Both keep ``BatchNormalization`` as its own node (randomisation tests re-initialise BN
statistics; actdiff reads pre-activation outputs) and a symbolic batch dimension:

- TorchScript: legacy exporter (``dynamo=False``) with ``do_constant_folding=False`` — the
  default (constant folding on, ``TrainingMode.EVAL``) fuses BN into the preceding Conv;
  either ``do_constant_folding=False`` or ``TrainingMode.PRESERVE`` alone keeps it.
- torch.export: dynamo exporter with ``optimize=False`` (its optimizer runs
  ``FuseBatchNormIntoConv``), then onnxscript's constant folding and dead-node removal only,
  which clean up the unoptimised graph's shape plumbing without fusing anything.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from typing import Iterator

import onnx
import torch

OPSET = 18  # the dynamo exporter cannot down-convert below 18; the legacy one takes it too


def torchscript_to_onnx(module: torch.jit.ScriptModule, example: torch.Tensor) -> onnx.ModelProto:
    """ONNX graph of a TorchScript classifier (input ``x``, output ``logits``, batch symbolic)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), _native_stderr_discarded():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (example,), buffer, dynamo=False, opset_version=OPSET,
            input_names=["x"], output_names=["logits"],
            dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
            do_constant_folding=False,
        )
    return onnx.load_from_string(buffer.getvalue())


@contextlib.contextmanager
def _native_stderr_discarded() -> Iterator[None]:
    """Discard what C++ code writes to file descriptors 1 and 2 meanwhile: on failure the legacy
    exporter logs the whole TorchScript graph to standard output (its ``setup_onnx_logging``
    tests a function for truth, so the log is always on in torch 2.13), which would bury the
    one-line error."""
    with tempfile.TemporaryFile() as sink:
        saved = [os.dup(fd) for fd in (1, 2)]
        for fd in (1, 2):
            os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)


def exported_program_to_onnx(ep: torch.export.ExportedProgram, example: torch.Tensor) -> onnx.ModelProto:
    """ONNX graph of a torch.export program. The batch dimension is symbolic only if the
    program was exported with a dynamic batch dim (``dynamic_shapes``): a program traced at a
    fixed batch has that size baked into its ops (e.g. ``view(2, -1)``) and cannot be
    generalised afterwards, so ``example`` must then have the batch size the program expects."""
    import onnxscript.optimizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(ep, (example,), dynamo=True, opset_version=OPSET, optimize=False,
                                    verbose=False, input_names=["x"], output_names=["logits"])
    model = program.model_proto
    onnxscript.optimizer.fold_constants(model)
    onnxscript.optimizer.remove_unused_nodes(model)
    return model

