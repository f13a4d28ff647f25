"""Finding the layers that Grad-CAM and guided backprop hook into on ``model.differentiable``."""

from __future__ import annotations

from torch import nn

from audit.errors import AuditError
from audit.models.classifier import Classifier


def find_layer(model: Classifier, name: str | None, method: str) -> nn.Module:
    """The sub-module called ``name``, or by default the last ``nn.Conv2d`` in module order."""
    modules = dict(model.differentiable.named_modules())
    if name is None:
        convolutions = [module for module in modules.values() if isinstance(module, nn.Conv2d)]
        if not convolutions:
            raise AuditError(
                f"{method} needs a convolutional layer; model {model.path} has none; "
                f"use --method gradient"
            )
        return convolutions[-1]
    name = str(name)  # ``--option grad-cam.layer=0`` arrives as the int 0
    if not name or name not in modules:
        valid = ", ".join(key for key in modules if key)
        raise AuditError(f"{method}: model {model.path} has no layer {name!r}; valid: {valid}")
    return modules[name]


def require_relu_modules(model: Classifier, method: str) -> None:
    """Guided backprop rewrites the backward pass of ``nn.ReLU`` modules; without any it is the
    plain gradient, so refuse rather than mislabel the map."""
    if not any(isinstance(module, nn.ReLU) for module in model.differentiable.modules()):
        raise AuditError(
            f"{method} needs nn.ReLU modules; model {model.path} has none; "
            f"use --method gradient or --method input-x-gradient"
        )
