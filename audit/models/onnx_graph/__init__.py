"""A differentiable torch twin of an ONNX classifier (our own interpreter: onnx2torch cannot
read opset-18+ graphs from the dynamo exporter).

``build_torch_twin(model)`` turns each node into a module — weighted nodes into real
``nn.Conv2d``/``nn.Linear``/``nn.BatchNorm2d`` subclasses holding ``nn.Parameter`` copies,
``Relu`` into ``nn.ReLU`` — named after the exporter's module path (see ``naming``), so hooks,
``named_modules()``, re-initialisation and training work. ``write_back`` copies the twin's
current weights into a copy of the ONNX model.
"""

from audit.models.onnx_graph.errors import UnsupportedOperatorError
from audit.models.onnx_graph.graph import OnnxGraphModule, OnnxSource, build_torch_twin
from audit.models.onnx_graph.ops import CONVERTERS
from audit.models.onnx_graph.write_back import write_back

SUPPORTED_OPS: frozenset[str] = frozenset(CONVERTERS)

__all__ = [
    "OnnxGraphModule",
    "OnnxSource",
    "SUPPORTED_OPS",
    "UnsupportedOperatorError",
    "build_torch_twin",
    "write_back",
]
