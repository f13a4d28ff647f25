"""``Constant`` (every attribute form of Constant-19, sparse included): always folded at build
time into a constant value."""

from __future__ import annotations

import numpy as np
import torch
from onnx import numpy_helper
from torch import nn

from audit.models.onnx_graph.ops.base import Converted, NodeSpec, register, tensor_from_proto, to_torch


class Constant(nn.Module):
    """Returns a fixed tensor; the graph folds it, so it never runs in ``forward``."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value

    def forward(self) -> torch.Tensor:
        return self.value


def sparse_to_dense(sparse: object) -> torch.Tensor:
    """SparseTensorProto → dense tensor; indices are [NNZ] linear or [NNZ, rank] (ONNX IR)."""
    values = numpy_helper.to_array(sparse.values)  # type: ignore[attr-defined]
    indices = numpy_helper.to_array(sparse.indices)  # type: ignore[attr-defined]
    dims = list(sparse.dims)  # type: ignore[attr-defined]
    dense = np.zeros(int(np.prod(dims)), dtype=values.dtype)
    linear = indices if indices.ndim == 1 else np.ravel_multi_index(indices.T, dims)
    dense[linear] = values
    return to_torch(dense.reshape(dims))


@register("Constant")
def constant(node: NodeSpec) -> Converted:
    a = node.attrs
    if "value" in a:
        value = tensor_from_proto(a["value"])
    elif "sparse_value" in a:
        value = sparse_to_dense(a["sparse_value"])
    elif "value_float" in a:
        value = torch.tensor(a["value_float"], dtype=torch.float32)
    elif "value_floats" in a:
        value = torch.tensor(list(a["value_floats"]), dtype=torch.float32)
    elif "value_int" in a:
        value = torch.tensor(a["value_int"], dtype=torch.int64)
    elif "value_ints" in a:
        value = torch.tensor(list(a["value_ints"]), dtype=torch.int64)
    else:
        raise node.unsupported(f"attribute {', '.join(a) or '(none)'}")
    return Constant(value), ()
