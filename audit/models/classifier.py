"""One interface over TorchScript, torch.export and ONNX classifiers.

``logits`` is the fast forward-only path (onnxruntime for ONNX, the native module otherwise).
``differentiable`` is a torch ``nn.Module``, built lazily, that maps the normalised input to the
same logits: gradient methods and counterfactuals use it. It is the format's own module where
torch can differentiate it (a loaded TorchScript module; a torch.export program's module tree,
``audit.models.native``) and the ONNX interpreter twin (``audit.models.onnx_graph``) for ONNX
files. ``layered`` is the module hook-based methods use; it differs from ``differentiable``
only for TorchScript, which refuses hooks (see README, "Layer access"). A class-map model
(WILDCAT: logits and class maps) also has ``class_maps``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from audit.models.spec import InputSpec

FORMATS = ("torchscript", "torch.export", "onnx")
#: ``Classifier.twin_check`` of a model differentiated as it is (no twin to compare)
NATIVE_CHECK = {"module": "native", "max_abs_error": None, "logit_scale": None, "tolerance": None,
                "note": "the format's own torch module is differentiated: it is the model, nothing to check"}


@dataclass
class Classifier:
    path: Path
    format: str
    sha256: str
    spec: InputSpec
    multilabel: bool
    class_names: list[str]
    forward_fn: Callable[[torch.Tensor], torch.Tensor]
    build_differentiable: Callable[[], nn.Module]
    provider: str = "torch"
    #: 1 for models traced with a fixed batch of one: the pipeline hands methods one image at a time.
    batch_limit: int | None = None
    #: every file the model loads ({"path", "sha256", "bytes"}: the model file, then ONNX external
    #: data files); ``sha256`` covers them all (``audit.models.files.combined_sha256``).
    files: list[dict[str, str | int]] = field(default_factory=list)
    #: builds the module that hook-based methods use (``layered``); None: ``differentiable`` is one.
    build_layered: Callable[[], nn.Module] | None = None
    #: what the twin check measured (``loader._verified_twin``): {"module": "onnx twin" | "native",
    #: "max_abs_error", "logit_scale", "tolerance"}; None while no twin was built for an ONNX file.
    twin_check: dict | None = None
    #: where the differentiable modules and the inputs live (``audit.device``)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    #: a class-map model's maps (``loader.class_map_outputs``; WILDCAT, Durand et al. 2017):
    #: normalised (N, C, H, W) input on ``device`` → (N, K, h, w) float32, forward only (onnxruntime
    #: bound to the second output for ONNX). None for an ordinary classifier. ``logits``,
    #: ``differentiable`` and ``layered`` give the logits alone (``loader.LogitsOnly``).
    class_maps: Callable[[torch.Tensor], torch.Tensor] | None = None
    _differentiable: nn.Module | None = field(default=None, repr=False)
    _layered: nn.Module | None = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_input(self, images) -> torch.Tensor:
        """(N, H, W, C) images in [0, 1] → the normalised (N, C, H, W) input on ``device``. To a
        GPU, the raw pixels go through pinned (page-locked) host memory with a non-blocking copy,
        which overlaps the work already queued there, and are normalised on the GPU."""
        if self.device.type != "cuda":
            return self.spec.to_tensor(images).to(self.device)
        raw = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        pinned = raw if raw.is_pinned() else raw.pin_memory()  # the data loader's workers pinned it already
        return self.spec.normalise(pinned.to(self.device, non_blocking=True)).contiguous()

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Forward pass only, (N, C, H, W) normalised → (N, K) logits."""
        return self.forward_fn(x)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """softmax over classes, or sigmoid per output for ``--multilabel`` models."""
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)

    @property
    def differentiable(self) -> nn.Module:
        """The differentiable model in eval mode (built on first use; may raise AuditError)."""
        if self._differentiable is None:
            self._differentiable = self.build_differentiable().eval()
        return self._differentiable

    @property
    def layered(self) -> nn.Module:
        """The differentiable model whose sub-modules are the model's layers and accept forward
        and backward hooks (Grad-CAM, guided backprop, actdiff, fine-tuning), in eval mode.
        The same object as ``differentiable`` unless the format's native module cannot be
        hooked (a loaded TorchScript module): then a twin built for the purpose."""
        if self.build_layered is None:
            return self.differentiable
        if self._layered is None:
            self._layered = self.build_layered().eval()
        return self._layered

    def layer_names(self) -> list[str]:
        """Names of sub-modules that hold parameters (targets for Grad-CAM, randomisation, actdiff)."""
        from audit.models.layer_names import named_layers

        return [name for name, module in named_layers(self.layered).items()
                if any(True for _ in module.parameters(recurse=False))]


def from_module(
    module: nn.Module,
    spec: InputSpec,
    class_names: list[str],
    *,
    multilabel: bool = False,
    path: Path = Path("<in-memory>"),
    format: str = "torchscript",
    sha256: str = "",
) -> Classifier:
    """Wrap an in-memory torch module (already differentiable, hooks allowed) as a Classifier."""
    module = module.eval()
    return Classifier(
        path=path,
        format=format,
        sha256=sha256,
        spec=spec,
        multilabel=multilabel,
        class_names=list(class_names),
        forward_fn=module,
        build_differentiable=lambda: module,
        twin_check=dict(NATIVE_CHECK),
        device=next(module.parameters(), torch.empty(0)).device,
    )
