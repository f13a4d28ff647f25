"""Write a trained ``WildcatNet`` in the input model's format, with two outputs (logits (N, K),
class maps (N, K, h, w)), and check the written file against the module.

- ONNX: the original graph with the trained trunk's weights written back
  (``audit.models.onnx_graph.write_back``; BatchNorm inserted for training folded back first),
  cut at the feature map's value (``onnx.utils.Extractor``: the old head's nodes and weights are
  gone), joined to the head exported by ``torch.onnx.export`` at the graph's opset
  (``onnx.compose.merge_models``). The input is renamed ``input``, the outputs are ``logits``
  and ``class_maps``, the batch dimension stays dynamic (fixed at one if it was). The trunk's
  nodes keep their names, so its layers keep theirs; the head's are ``wildcat.transfer`` (the
  1×1 convolution), then Reshape, ReduceMean, TopK.
- TorchScript: ``torch.jit.trace`` of the net (trunk: the model's ONNX twin, as fine-tuning
  writes TorchScript back); the tracer drops the old head's unused operators (its weights stay in
  the file as unused attributes).
- torch.export: ``torch.export.export`` of the net (trunk: the program's own module tree) with a
  dynamic batch dimension, then dead-code elimination of the graph, which removes the old
  head's operators (its weights stay as unused inputs of the program: torch.export lifts every
  parameter).

In every format the outputs cannot depend on the old head: the head reads the cut layer's output
only. ``write_wildcat`` then runs the written file with its own runtime (onnxruntime,
``torch.jit.load``, ``torch.export.load``) on three random inputs and requires both outputs to
equal the module's within ``TOLERANCE`` (absolute, relative to the largest |value|, at least 1).
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnx.compose
import onnx.utils
import torch
from torch import nn

from audit.errors import AuditError, first_line
from audit.finetune.export import SUFFIXES, _example
from audit.finetune.normalisation import exportable
from audit.finetune.wildcat.network import WildcatNet
from audit.models.classifier import Classifier
from audit.models.layer_names import inner_model

TOLERANCE = 1e-4
OUTPUTS = ("logits", "class_maps")
INPUT = "input"


class _Head(nn.Module):
    """The head alone, under the name ``wildcat`` (its ONNX nodes and weights are named so)."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.wildcat = head

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.wildcat(features)


def frozen(net: WildcatNet) -> WildcatNet:
    """An eval-mode copy on the CPU with inserted BatchNorm folded back (``normalisation.exportable``)."""
    net = copy.deepcopy(net).cpu()
    net.trunk = inner_model(exportable(net.trunk))
    return net.eval()


def _feature_value(twin: nn.Module, layer: str, graph: onnx.GraphProto) -> str:
    node_name = getattr(twin, "onnx_nodes", {}).get(layer)
    node = next((n for n in graph.node if n.name == node_name), None) if node_name else None
    if node is None or len(node.output) != 1:
        raise AuditError(f"the cut layer {layer!r} is not a single-output node of the ONNX graph; it cannot be cut there")
    return node.output[0]


def _rename_value(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if v == old else v for v in node.input]
        node.output[:] = [new if v == old else v for v in node.output]
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.name == old:
            value.name = new


def onnx_model(classifier: Classifier, net: WildcatNet) -> onnx.ModelProto:
    """The ONNX graph of ``net`` (module docstring), from the original file ``classifier.path``."""
    from audit.models.onnx_graph import write_back

    net = frozen(net)
    original = onnx.load(str(classifier.path))
    trained = write_back(net.trunk, original)
    feature = _feature_value(net.trunk, net.layer, trained.graph)
    inputs = [i.name for i in trained.graph.input if i.name not in {init.name for init in trained.graph.initializer}]
    fixed = classifier.batch_limit == 1
    features = net.features(_example(classifier, 1 if fixed else 2)).detach()
    if feature not in {v.name for v in trained.graph.value_info}:  # Extractor needs the cut value's type
        trained.graph.value_info.append(onnx.helper.make_tensor_value_info(
            feature, onnx.TensorProto.FLOAT, [1 if fixed else "batch", *features.shape[1:]]))
    trunk = onnx.utils.Extractor(trained).extract_model(inputs, [feature])
    opset = next(o.version for o in trunk.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 11:
        raise AuditError(f"{classifier.path}: ONNX opset {opset}; the WILDCAT head needs TopK with a K input (opset ≥ 11): "
                         f"re-export the model at opset 11 or later")
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(folder) / "head.onnx"
        dynamic = None if fixed else {"features": {0: "batch"}, "logits": {0: "batch"}, "class_maps": {0: "batch"}}
        torch.onnx.export(_Head(net.head), (features,), str(path), dynamo=False, opset_version=opset,
                          input_names=["features"], output_names=list(OUTPUTS), dynamic_axes=dynamic)
        head = onnx.load(str(path))
    head.ir_version = trunk.ir_version
    clashes = ({n.name for n in trunk.graph.node} | {v for n in trunk.graph.node for v in n.output}
               | {i.name for i in trunk.graph.initializer}) & (
        {n.name for n in head.graph.node} | {v for n in head.graph.node for v in n.output} | {i.name for i in head.graph.initializer})
    if clashes:
        head = onnx.compose.add_prefix(head, "wildcat/", rename_inputs=False, rename_outputs=False)
    merged = onnx.compose.merge_models(trunk, head, io_map=[(feature, "features")])
    if inputs[0] != INPUT:
        _rename_value(merged.graph, inputs[0], INPUT)
    onnx.checker.check_model(merged)
    return merged


def _write(classifier: Classifier, net: WildcatNet, path: Path) -> None:
    if classifier.format == "onnx":
        onnx.save(onnx_model(classifier, net), str(path))
        return
    net = frozen(net)
    fixed = classifier.batch_limit == 1
    example = (_example(classifier, 1 if fixed else 2),)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if classifier.format == "torchscript":
            torch.jit.trace(net, example, check_trace=False).save(str(path))
            return
        if classifier.format != "torch.export":
            raise AuditError(f"{classifier.path}: format {classifier.format!r} cannot be written; use one of {', '.join(SUFFIXES)}")
        dynamic = None if fixed else {"x": {0: torch.export.Dim("batch", min=1, max=4096)}}
        program = torch.export.export(net, example, dynamic_shapes=dynamic)
        program.graph.eliminate_dead_code()
        torch.export.save(program, str(path))


def run_written(path: Path, fmt: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, class_maps) of the written file, run by its own runtime on the CPU."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        if names != list(OUTPUTS) or [i.name for i in session.get_inputs()] != [INPUT]:
            raise AuditError(f"{path}: inputs/outputs {[i.name for i in session.get_inputs()]} → {names}, "
                             f"expected [{INPUT!r}] → {list(OUTPUTS)}")
        return tuple(torch.from_numpy(np.asarray(v)) for v in session.run(None, {INPUT: x.numpy()}))
    module = torch.jit.load(str(path)) if fmt == "torchscript" else torch.export.load(str(path)).module()
    with torch.no_grad():
        return tuple(module(x))


def max_error(expected: tuple[torch.Tensor, ...], got: tuple[torch.Tensor, ...]) -> float:
    """The largest |difference| of any output, over max(1, largest |expected value|)."""
    errors = []
    for a, b in zip(expected, got):
        if a.shape != b.shape:
            return float("inf")
        errors.append(float((a.double() - b.double()).abs().max() / max(1.0, float(a.abs().max()))))
    return max(errors)


def write_wildcat(classifier: Classifier, net: WildcatNet, path: Path) -> Path:
    """Write ``net`` to ``path`` in ``classifier.format`` (module docstring), run the file and
    compare it with ``net`` (eval mode); AuditError when it cannot be written or differs by more
    than ``TOLERANCE``."""
    try:
        _write(classifier, net, path)
        x = _example(classifier, 1 if classifier.batch_limit == 1 else 3)
        with torch.no_grad():
            expected = frozen(net)(x)
        error = max_error(expected, run_written(path, classifier.format, x))
    except AuditError:
        raise
    except Exception as exc:
        raise AuditError(f"{classifier.path}: the WILDCAT model could not be written as {classifier.format} to {path} "
                         f"({first_line(exc)}); convert the model to ONNX first") from exc
    if not error <= TOLERANCE:
        raise AuditError(f"{path}: the written WILDCAT model differs from the trained one by {error:.2e} "
                         f"(> {TOLERANCE}); convert the model to ONNX first")
    return path
