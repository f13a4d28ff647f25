"""Copy a (fine-tuned, re-initialised) twin's weights back into an ONNX model."""

from __future__ import annotations

import onnx
from onnx import numpy_helper

from audit.errors import AuditError
from audit.models.onnx_graph.graph import OnnxGraphModule


def write_back(twin: OnnxGraphModule, model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose weights are the twin's current parameters and buffers.

    Each twin tensor goes to the graph value its node read: an initializer is overwritten in
    place; a value computed from constants (e.g. the ``Identity`` nodes the legacy exporter
    adds for de-duplicated initializers) becomes its own initializer and its producing node is
    removed, so twin tensors that shared an initializer stay independent. A convolution bias
    the graph did not have (a BatchNorm folded into a bias-free convolution after fine-tuning)
    becomes a new initializer and the node's third input.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    state = twin.state_dict()
    by_name = {init.name: init for init in graph.initializer}
    producers = {o: node for node in graph.node for o in node.output}
    for key, source in twin.onnx_sources.items():
        tensor = state[key].detach().cpu()
        if source.transposed:
            tensor = tensor.t()
        reference = by_name.get(source.initializer or "")
        array = tensor.contiguous().numpy()
        if reference is not None:
            array = array.astype(onnx.helper.tensor_dtype_to_np_dtype(reference.data_type))
        proto = numpy_helper.from_array(array, source.value)
        if source.value in by_name:
            by_name[source.value].CopyFrom(proto)
            continue
        producer = producers.get(source.value)
        if producer is not None:
            graph.node.remove(producer)
            producers.pop(source.value)
        graph.initializer.append(proto)
        by_name[source.value] = graph.initializer[-1]
    _add_new_biases(twin, graph, by_name)
    return out


def _add_new_biases(twin: OnnxGraphModule, graph: onnx.GraphProto, by_name: dict) -> None:
    nodes = {node.name: node for node in graph.node}
    for key, parameter in twin.named_parameters():
        if key in twin.onnx_sources:
            continue
        module_name, _, attribute = key.rpartition(".")
        node = nodes.get(twin.onnx_nodes.get(module_name, ""))
        if attribute != "bias" or node is None or node.op_type != "Conv" or len(node.input) != 2:
            raise AuditError(f"{key}: the twin has a parameter the ONNX graph has no place for; it cannot be written back")
        name = f"{node.name or module_name}_bias"
        while name in by_name:
            name += "_"
        reference = by_name[node.input[1]] if node.input[1] in by_name else None
        array = parameter.detach().cpu().numpy()
        if reference is not None:
            array = array.astype(onnx.helper.tensor_dtype_to_np_dtype(reference.data_type))
        graph.initializer.append(numpy_helper.from_array(array, name))
        by_name[name] = graph.initializer[-1]
        node.input.append(name)
