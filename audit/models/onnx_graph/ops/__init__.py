"""Operator converters, registered into ``CONVERTERS`` by importing each group."""

from audit.models.onnx_graph.ops import (  # noqa: F401  (registration side effects)
    activations,
    constants,
    control,
    elementwise,
    layers,
    pool,
    reduce,
    resize,
    sequence,
    shape,
)
from audit.models.onnx_graph.ops.base import CONVERTERS, NodeSpec

__all__ = ["CONVERTERS", "NodeSpec"]
