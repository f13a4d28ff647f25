"""Build-time errors of the ONNX twin."""

from __future__ import annotations

from audit.errors import AuditError

FIX = "use a forward-only method (--method occlusion) or re-export the model with supported operators"


class UnsupportedOperatorError(AuditError):
    """The graph holds operators (or operator variants) the twin cannot differentiate through.

    ``problems`` lists one ``"Op (domain 'd', opset N): reason"`` entry per distinct problem.
    """

    def __init__(self, problems: list[str], source: str = "ONNX model") -> None:
        self.problems = problems
        super().__init__(
            f"{source}: cannot build a differentiable twin, unsupported operator(s): "
            f"{'; '.join(problems)}; {FIX}"
        )


class Unsupported(Exception):
    """Raised by a converter for an attribute, dtype or input form it does not handle."""
