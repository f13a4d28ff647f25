"""Load a classifier file of any supported format behind the ``Classifier`` interface.

Formats (detected from the content, see ``files.detect_format``):
- TorchScript (``.pt``/``.ts``): ``torch.jit.load``; input size from ``--input-size``/``--channels``.
  The ScriptModule itself is ``differentiable`` (gradients flow through it); hooks cannot be
  registered on it, so ``layered`` is the ONNX twin of its legacy ONNX export, built only when a
  hook-based method asks for it.
- torch.export (``.pt2``): loaded safely (``export_archive``); input size from the program's
  input signature. ``differentiable`` and ``layered`` are the program's own module tree
  (``native.native_program_module``): no exporter, no twin.
- ONNX (``.onnx``): onnxruntime for forward passes (its CUDA provider when the device is a GPU and
  onnxruntime-gpu is installed, the CPU provider otherwise: ``Classifier.provider`` says which),
  with I/O binding to the input tensor's memory and a torch output tensor on the device, so a
  GPU batch does not round-trip through the host; input size from the graph's declared input
  shape. ``differentiable`` is the twin built by ``audit.models.onnx_graph``.

Every module is put on ``ModelOptions.device`` (``audit.device``) when it is built: TorchScript
loads there (``map_location``), a torch.export program is moved there
(``move_to_device_pass``) before it is unflattened, the ONNX twin is moved there.

A twin is checked against the forward-only path (``twin_tolerance``); ``Classifier.twin_check``
records what was measured (results.json ``model.twin_check``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from audit.device import is_out_of_memory
from audit.errors import AuditError, first_line
from audit.limits import MAX_IMAGE_PIXELS, too_many_pixels
from audit.models.classifier import NATIVE_CHECK, Classifier
from audit.models.files import combined_sha256, detect_format, model_files
from audit.models.metadata import EXTRA_FILE, Metadata, parse_metadata
from audit.models.metadata import KEY as METADATA_KEY
from audit.models.spec import InputSpec

#: twin check: max|twin − model| ≤ TWIN_ATOL + TWIN_RTOL · max|model| (``twin_tolerance``)
TWIN_ATOL = 1e-4
TWIN_RTOL = 1e-4


@dataclass(frozen=True)
class ModelOptions:
    """Preprocessing and output options from the command line (None: read from the model)."""

    input_size: tuple[int, int] | None = None
    channels: int | None = None
    #: None: from the model's metadata (``audit.models.metadata``), else 0, 1 and [0, 1]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    value_range: tuple[float, float] | None = None
    multilabel: bool = False
    class_names: tuple[str, ...] | None = None
    device: torch.device = torch.device("cpu")


def load_classifier(path: Path, options: ModelOptions = ModelOptions()) -> Classifier:
    """Load ``path`` and probe it once with a zero batch to learn the number of outputs and
    whether it is a class-map model (``class_map_outputs``)."""
    path = Path(path)
    model_format = detect_format(path)
    files = model_files(path, model_format)
    loader = {"torchscript": _load_torchscript, "torch.export": _load_exported, "onnx": _load_onnx}[model_format]
    device = options.device
    raw_forward, native, build_twin, declared, provider, fixed_batch, stored = loader(path, device)
    metadata = parse_metadata(path, stored)
    spec = _input_spec(path, declared, options, metadata)
    probe_out = _checked_forward(path, raw_forward)(torch.zeros((2, *spec.shape), device=device))
    maps = class_map_outputs(probe_out)
    forward_fn, class_maps = raw_forward, None
    if maps:
        forward_fn, class_maps = _output_path(raw_forward, 0), _output_path(raw_forward, 1)
        native = _logits_only(native)
        build_twin = _logits_only(build_twin)
    forward_fn = _checked_forward(path, forward_fn, _one_tensor)
    probe = _one_tensor(path, probe_out[0] if maps else probe_out).float()
    if probe.ndim != 2:
        raise AuditError(
            f"{path}: output has shape {tuple(probe.shape)}; a classifier must return (batch, classes) logits"
        )
    num_classes = probe.shape[1]
    class_names = list(options.class_names or metadata.class_names or [str(i) for i in range(num_classes)])
    if len(class_names) != num_classes:
        source = "--class-names" if options.class_names else "the model metadata's class_names"
        raise AuditError(
            f"{source} gives {len(class_names)} names but {path} has {num_classes} outputs; give {num_classes}"
        )

    def twin() -> nn.Module:
        module, classifier.twin_check = _verified_twin(path, lambda: build_twin(spec).to(device), forward_fn, spec,
                                                       model_format, device)
        if native is not None:
            classifier.twin_check["used_by"] = "hook-based methods; gradient methods differentiate the native module"
        return module

    classifier = Classifier(
        path=path,
        format=model_format,
        sha256=combined_sha256(files),
        files=[f.as_dict() for f in files],
        spec=spec,
        multilabel=options.multilabel,
        class_names=class_names,
        forward_fn=forward_fn,
        build_differentiable=native if native is not None else twin,
        provider=provider,
        batch_limit=fixed_batch,
        build_layered=twin if native is not None and build_twin is not None else None,
        twin_check=dict(NATIVE_CHECK) if native is not None else None,
        device=device,
        class_maps=_checked_forward(path, class_maps, _one_tensor) if class_maps is not None else None,
    )
    return classifier


def class_map_outputs(out: object) -> bool:
    """True when ``out`` is a class-map model's output (the WILDCAT convention, README
    "Trainable saliency"): exactly two tensors, (N, K) logits and (N, K, h, w) class maps with
    the same N and K. Any other several-output model is refused by ``_one_tensor``."""
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        return False
    logits, maps = out
    return (isinstance(logits, torch.Tensor) and isinstance(maps, torch.Tensor) and logits.ndim == 2
            and maps.ndim == 4 and tuple(maps.shape[:2]) == tuple(logits.shape))


def _output_path(forward_fn: Callable, index: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Output ``index`` of a two-output forward: the session bound to that output alone for ONNX
    (``OnnxForward.output``), else that element of the module's tuple."""
    select = getattr(forward_fn, "output", None)
    return select(index) if select is not None else (lambda x: forward_fn(x)[index])


def _logits_only(build: Callable[..., nn.Module] | None) -> Callable[..., nn.Module] | None:
    """``build`` with its module wrapped in ``LogitsOnly`` (None stays None)."""
    return None if build is None else (lambda *args: LogitsOnly(build(*args)))


Declared = tuple[int | None, int | None, int | None]  # channels, height, width as the model declares them


def _input_spec(path: Path, declared: Declared, options: ModelOptions, metadata: Metadata = Metadata()) -> InputSpec:
    channels, height, width = declared
    if options.channels is not None:
        if channels is not None and channels != options.channels:
            raise AuditError(f"--channels {options.channels} contradicts {path}, which declares {channels} channels")
        channels = options.channels
    if options.input_size is not None:
        size = tuple(options.input_size)
        if height is not None and (height, width) != size:
            raise AuditError(
                f"--input-size {size[0]} {size[1]} contradicts {path}, which declares {height}x{width}"
            )
        height, width = size
    if channels is None or height is None or width is None:
        raise AuditError(
            f"{path}: the model does not declare its input size; pass --input-size H W and --channels C"
        )
    source = "--input-size/--channels" if options.input_size is not None or options.channels is not None else str(path)
    if too_many_pixels(height, width) or channels * height * width > 4 * MAX_IMAGE_PIXELS:
        raise AuditError(
            f"{source}: input {channels}x{height}x{width} is larger than the {MAX_IMAGE_PIXELS:,}-pixel limit every "
            f"image reader applies (at most 4 channels); give a smaller --input-size or re-export the model"
        )
    def chosen(flag: tuple | None, stored: tuple | None, default: tuple) -> tuple:
        return flag if flag is not None else stored if stored is not None else default

    return InputSpec(channels, height, width, chosen(options.mean, metadata.mean, (0.0,)),
                     chosen(options.std, metadata.std, (1.0,)), chosen(options.value_range, metadata.value_range, (0.0, 1.0)),
                     source=_preprocessing_source(options, metadata))


def _preprocessing_source(options: ModelOptions, metadata: Metadata) -> str:
    """Where mean, std and value range came from (results.json ``model.input.source``)."""
    flags = [f is not None for f in (options.mean, options.std, options.value_range)]
    stored = metadata.preprocessing
    if any(flags) and stored and not all(flags):
        return "command line and model metadata"
    if any(flags):
        return "command line"
    return "model metadata" if stored else "defaults (no flags, no model metadata)"


def _checked_forward(path: Path, forward_fn: Callable[[torch.Tensor], object],
                     result: Callable[[Path, object], torch.Tensor] | None = None) -> Callable:
    """``forward_fn`` without gradients, a failure as one line; ``result(path, output)`` checks
    the output (``_one_tensor``) and the output is float32 (None: returned as it is, for the probe)."""
    def forward(x: torch.Tensor):
        try:
            with torch.no_grad():
                out = forward_fn(x)
        except AuditError:
            raise
        except Exception as exc:
            if is_out_of_memory(exc):  # bad input of another kind: halved or reported by audit.device
                raise
            raise AuditError(
                f"{path}: forward pass failed on input {tuple(x.shape)} ({first_line(exc)}); check --input-size, "
                f"--channels and that the model takes one NCHW image tensor"
            ) from exc
        return out if result is None else result(path, out).float()

    return forward


def _one_tensor(path: Path, out: object) -> torch.Tensor:
    """The model's output, which must be one logits tensor: a dict or tuple of outputs (logits
    and features, aux heads) is refused rather than guessed from, because the saliency methods
    differentiate the module itself, which would return the same several values. The one
    exception, (logits, class maps), is recognised before (``class_map_outputs``)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        what = f"a dict (keys {', '.join(map(str, out))})"
    elif isinstance(out, (tuple, list)):
        what = f"a {type(out).__name__} of {len(out)} values"
    else:
        what = f"a {type(out).__name__}"
    raise AuditError(_several_outputs(path, what))


def _several_outputs(path: Path, what: str) -> str:
    return (f"{path}: the model returns {what}, not one (batch, classes) logits tensor; export a wrapper whose "
            f"forward returns the logits only (e.g. model(x)[\"logits\"]), or (logits, class maps) of shapes (N, K) "
            f"and (N, K, h, w)")


def twin_tolerance(logit_scale: float) -> float:
    """TWIN_ATOL + TWIN_RTOL · max|model logits|. Relative because float32 rounding grows with
    the logits: onnxruntime itself differs from eager by 3.7e-4 at logits ≈ 440, an
    EfficientNet twin at batch 1 by 1.10e-4 at logits ±17 (1.15e-4 with 2 threads), i.e. at
    most 6.5e-6 of the scale; rtol = 1e-4 leaves a margin of 15 over that, and atol = 1e-4 (the
    former absolute tolerance) keeps small logits from being held to float32's last digits."""
    return TWIN_ATOL + TWIN_RTOL * logit_scale


def _verified_twin(
    path: Path,
    build_twin: Callable[[], nn.Module],
    forward_fn: Callable[[torch.Tensor], torch.Tensor],
    spec: InputSpec,
    model_format: str = "onnx",
    device: torch.device = torch.device("cpu"),
) -> tuple[nn.Module, dict]:
    """Build the differentiable twin and check it against the forward-only path on three
    seeded random images in [0, 1], normalised like the data (``--value-range``, ``--mean``,
    ``--std``), within ``twin_tolerance``; returns it with the record of the check
    ({"module": "onnx twin", "max_abs_error", "logit_scale", "tolerance"})."""
    from audit.models.onnx_graph import UnsupportedOperatorError

    try:
        twin = build_twin().eval()
    except UnsupportedOperatorError as exc:
        raise UnsupportedOperatorError(exc.problems, f"{path}: format {model_format}") from exc
    except AuditError:
        raise
    except Exception as exc:
        raise AuditError(
            f"{path}: cannot build the differentiable twin ({first_line(exc)}); use a forward-only method "
            f"(--method occlusion)"
        ) from exc
    images = np.random.default_rng(0).random((3, spec.height, spec.width, spec.channels), dtype=np.float32)
    x = spec.to_tensor(images).to(device)
    with torch.no_grad():
        expected = forward_fn(x)
        try:
            got = twin(x)
        except Exception as exc:  # noqa: BLE001 (an exporter's broken graph fails in many ways)
            raise AuditError(
                f"{path}: format {model_format}: the differentiable twin fails on the check input ({first_line(exc)}); "
                f"use a forward-only method (--method occlusion) and report this model"
            ) from exc
    if isinstance(got, (tuple, list)):
        got = got[0]
    if not bool(torch.isfinite(expected).all()):
        raise AuditError(
            f"{path}: the model's output is NaN or infinite for the check input (random images in [0, 1] "
            f"normalised with --value-range, --mean and --std); check those options, or the model itself"
        )
    error = float((got.float() - expected).abs().max())
    scale = float(expected.abs().max())
    tolerance = twin_tolerance(scale)
    if not error <= tolerance:
        difference = ("is NaN or infinite where the model's is not" if not np.isfinite(error)
                      else f"differs by {error:.2e} (> {tolerance:.2e}, for logits up to {scale:.3g})")
        raise AuditError(
            f"{path}: the differentiable twin's output {difference}; use a forward-only method "
            f"(--method occlusion) and report this model"
        )
    return twin, {"module": "onnx twin", "max_abs_error": error, "logit_scale": scale, "tolerance": tolerance}


class ImageByImage(nn.Module):
    """Runs a model traced for batch size 1 on each image of a batch (differentiable; hooks fire
    per image); a model returning a tuple (logits, class maps) gets each part concatenated."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        outputs = [self.model(x[i : i + 1]) for i in range(len(x))]
        if isinstance(outputs[0], (tuple, list)):
            return tuple(torch.cat(parts) for parts in zip(*outputs))
        if not isinstance(outputs[0], torch.Tensor):
            return outputs[0]  # a dict: no classifier's output, which the loader's probe names
        return torch.cat(outputs)


class LogitsOnly(nn.Module):
    """A class-map model (``forward`` → (logits, class maps)) seen as a classifier: ``forward``
    returns the logits, so every method differentiates and hooks it as any model; ``class_maps``
    runs the same module for the maps (the randomisation check's copies keep both in step).
    Adds no prefix to layer names (``audit.models.layer_names.inner_model``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[0]

    def class_maps(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K, h, w) float32 class maps, forward only."""
        with torch.no_grad():
            return self.model(x)[1].float()


# --- TorchScript -----------------------------------------------------------------------------


def _load_torchscript(path: Path, device: torch.device):
    extra = {EXTRA_FILE: ""}
    try:
        module = torch.jit.load(str(path), map_location=device, _extra_files=extra).eval()
    except Exception as exc:
        raise AuditError(f"{path}: cannot load TorchScript ({first_line(exc)}); re-save it with torch.jit.save") from exc

    def build_twin(spec: InputSpec) -> nn.Module:
        from audit.models.onnx_graph import UnsupportedOperatorError, build_torch_twin
        from audit.models.to_onnx import torchscript_to_onnx

        try:
            graph = torchscript_to_onnx(module, torch.zeros((2, *spec.shape), device=device))
        except Exception as exc:
            raise _no_layers(path, f"the ONNX exporter cannot export it ({first_line(exc)})") from exc
        try:
            twin = build_torch_twin(graph)
        except UnsupportedOperatorError as exc:
            raise _no_layers(path, f"its ONNX export has operator(s) the twin does not support "
                                   f"({'; '.join(exc.problems)})") from exc
        try:
            with torch.no_grad():
                twin.to(device)(torch.zeros((2, *spec.shape), device=device))
        except Exception as exc:  # noqa: BLE001 (the exporter wrote a graph that does not run)
            raise _no_layers(path, f"its ONNX export does not run ({first_line(exc)})") from exc
        return twin

    return module, lambda: module, build_twin, (None, None, None), "torch", None, extra[EXTRA_FILE] or None


def _no_layers(path: Path, why: str) -> AuditError:
    """Why a TorchScript model's layers are out of reach, what still works and the fix."""
    return AuditError(
        f"{path}: format torchscript: {why}, and a TorchScript module takes no hooks, so Grad-CAM, guided "
        f"backprop and fine-tuning cannot reach its layers; gradient methods and occlusion still work — or save "
        f"the model with torch.export as .pt2, which keeps the layers"
    )


# --- torch.export ----------------------------------------------------------------------------


def _load_exported(path: Path, device: torch.device):
    from torch.export.passes import move_to_device_pass

    from audit.models.export_archive import load_export_archive

    extra = {EXTRA_FILE: ""}
    program = load_export_archive(path, extra)
    try:
        if device.type != "cpu":
            program = move_to_device_pass(program, device)
        user_inputs = program.graph_signature.user_inputs
        shapes = [node.meta["val"].shape for node in program.graph.nodes
                  if node.op == "placeholder" and node.name in user_inputs]
        module = program.module()
    except Exception as exc:
        raise AuditError(f"{path}: cannot read the torch.export program ({first_line(exc)}); re-save it with torch.export.save") from exc
    if len(user_inputs) != 1:
        raise AuditError(f"{path}: program takes {len(user_inputs)} inputs; a classifier takes one image tensor")
    outputs = program.graph_signature.user_outputs
    if len(outputs) > 2:
        raise AuditError(_several_outputs(path, f"{len(outputs)} outputs"))
    declared: Declared = (None, None, None)
    fixed_batch = None
    for shape in shapes:
        if len(shape) != 4:
            raise AuditError(f"{path}: input has shape {tuple(shape)}; expected (batch, channels, height, width)")
        declared = tuple(int(d) if isinstance(d, int) else None for d in shape[1:])  # type: ignore[assignment]
        fixed_batch = int(shape[0]) if isinstance(shape[0], int) else None
    if fixed_batch not in (None, 1):
        raise AuditError(f"{path}: the program's batch size is fixed at {fixed_batch}; re-export it with dynamic_shapes for the batch")

    def native() -> nn.Module:
        from audit.models.native import native_program_module

        tree = native_program_module(program, str(path))
        return ImageByImage(tree) if fixed_batch == 1 else tree

    forward = ImageByImage(module) if fixed_batch == 1 else module
    return forward, native, None, declared, "torch", fixed_batch, extra[EXTRA_FILE] or None


# --- ONNX ------------------------------------------------------------------------------------


def onnx_providers(device: torch.device = torch.device("cpu")) -> list:
    """onnxruntime's CUDA provider on the device's GPU when the device is CUDA and onnxruntime-gpu
    offers it, else the CPU provider (``Classifier.provider`` records which one ran)."""
    import onnxruntime

    if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _load_onnx(path: Path, device: torch.device):
    import onnx
    import onnxruntime

    try:
        proto = onnx.load(str(path))
    except Exception as exc:
        raise AuditError(f"{path}: cannot read the ONNX model or its external data ({first_line(exc)}); re-export the model") from exc
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    # onnxruntime's worker threads spin after each run by default, taking the cores that torch
    # (the differentiable model) and the data loader need next; let them sleep instead.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # and as many of them as torch has threads (OMP_NUM_THREADS, a Ray task's CPUs): by default
    # onnxruntime takes every core, so two tasks on one machine ran four threads on two cores
    options.intra_op_num_threads = torch.get_num_threads()
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=onnx_providers(device))
    except Exception as exc:
        raise AuditError(f"{path}: onnxruntime cannot load it ({first_line(exc)}); check the opset and operators") from exc
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise AuditError(f"{path}: graph takes {len(inputs)} inputs; a classifier takes one image tensor")
    shape = inputs[0].shape
    if len(shape) != 4:
        raise AuditError(f"{path}: input {inputs[0].name} has shape {shape}; expected (batch, channels, height, width)")
    declared = tuple(d if isinstance(d, int) and d > 0 else None for d in shape[1:])
    fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    outputs = session.get_outputs()
    if len(outputs) > 2:  # two: a class-map model if the probe's outputs have its shapes
        raise AuditError(_several_outputs(path, f"{len(outputs)} outputs ({', '.join(o.name for o in outputs)})"))
    forward = OnnxForward(path, session, device, fixed_batch)

    def build_twin(spec: InputSpec) -> nn.Module:
        from audit.models.onnx_graph import build_torch_twin

        twin = build_torch_twin(proto)
        return ImageByImage(twin) if fixed_batch == 1 else twin

    stored = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    return forward, None, build_twin, declared, session.get_providers()[0], fixed_batch, stored


class OnnxForward:
    """The session's forward pass: ``output(i)`` runs it for output i alone (a ``BoundSession``
    bound to it: a class-map model's logits and maps are two such paths); called, it returns
    the one output, or the tuple of both."""

    def __init__(self, path: Path, session, device: torch.device, fixed_batch: int | None) -> None:
        self.path, self.fixed_batch = path, fixed_batch
        self.runs = [BoundSession(session, device, output.name) for output in session.get_outputs()]

    def output(self, index: int) -> Callable[[torch.Tensor], torch.Tensor]:
        run = self.runs[index]

        def forward(x: torch.Tensor) -> torch.Tensor:
            if self.fixed_batch is None or self.fixed_batch == len(x):
                return run(x)
            if self.fixed_batch != 1:
                raise AuditError(f"{self.path}: the graph's batch size is fixed at {self.fixed_batch}; re-export it "
                                 f"with a dynamic batch dimension")
            return torch.cat([run(x[i : i + 1]) for i in range(len(x))])

        return forward

    def __call__(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        outputs = tuple(self.output(i)(x) for i in range(len(self.runs)))
        return outputs[0] if len(outputs) == 1 else outputs


class BoundSession:
    """One onnxruntime run through I/O binding: the input is bound to the (contiguous float32)
    tensor's own memory and the output (``output``, by default the graph's first) to a torch
    tensor allocated on the session's device, so a batch already on the GPU goes to
    onnxruntime's CUDA provider and back without passing through the host. The output is
    returned on ``device``; a CUDA run whose session has only the CPU provider (no
    onnxruntime-gpu) copies the batch to the host and the output back."""

    def __init__(self, session, device: torch.device, output: str | None = None) -> None:
        self.session = session
        self.input = session.get_inputs()[0].name
        self.output = output or session.get_outputs()[0].name
        self.device = device
        on_gpu = session.get_providers()[0] == "CUDAExecutionProvider"
        self.where = torch.device("cuda", device.index or 0) if on_gpu else torch.device("cpu")
        #: the output's shape after the batch: (K,) of float32 (N, K) logits, (K, h, w) of class
        #: maps, learnt from the first run
        self.tail: tuple[int, ...] | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().to(self.where, torch.float32).contiguous()
        kind, index = self.where.type, self.where.index or 0
        binding = self.session.io_binding()
        binding.bind_input(self.input, kind, index, np.float32, tuple(x.shape), x.data_ptr())
        if kind == "cuda":  # the input was written on torch's stream; onnxruntime reads it on its own
            torch.cuda.current_stream(self.where).synchronize()
        if self.tail is None:  # the first run (the probe): onnxruntime allocates, then we know the shape
            binding.bind_output(self.output, kind, index)
            self.session.run_with_iobinding(binding)
            out = torch.from_numpy(binding.copy_outputs_to_cpu()[0])
            if out.ndim in (2, 4) and out.dtype == torch.float32:
                self.tail = tuple(out.shape[1:])
            return out.to(self.device)
        out = torch.empty((len(x), *self.tail), dtype=torch.float32, device=self.where)
        binding.bind_output(self.output, kind, index, np.float32, tuple(out.shape), out.data_ptr())
        self.session.run_with_iobinding(binding)
        return out.to(self.device)
