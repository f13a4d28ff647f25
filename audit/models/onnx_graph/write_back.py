"""Copy a (fine-tuned, re-initialised) twin's weights back into an ONNX model."""

from __future__ import annotations

import onnx
from onnx import numpy_helper

from audit.models.onnx_graph.graph import OnnxGraphModule


def write_back(twin: OnnxGraphModule, model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose weights are the twin's current parameters and buffers.

    Each twin tensor goes to the graph value its node read: an initializer is overwritten in
    place; a value computed from constants (e.g. the ``Identity`` nodes the legacy exporter
    adds for de-duplicated initializers) becomes its own initializer and its producing node is
    removed, so twin tensors that shared an initializer stay independent.
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
    return out
