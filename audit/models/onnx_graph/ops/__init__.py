"""Operator converters, registered into ``CONVERTERS`` by importing each group."""

from audit.models.onnx_graph.ops import (  # noqa: F401  (registration side effects)
    activations,
    constants,
    elementwise,
    layers,
    pool,
    reduce,
    resize,
    shape,
)
from audit.models.onnx_graph.ops.base import CONVERTERS, NodeSpec

__all__ = ["CONVERTERS", "NodeSpec"]
