"""Latent Shift as saliency methods (Cohen et al. 2021): ``latentshift-max`` (the paper's best),
``latentshift-mean``, ``latentshift-minmax`` and ``latentshift-sliding``, so that every metric of
``audit run`` applies to them::

    audit run MODEL --data D --method latentshift-max --option latentshift-max.autoencoder=AE.pt

Options: ``autoencoder`` (required: ``AE.pt``, a TorchScript file or ``ENC.onnx,DEC.onnx``),
``rule`` (``paper``/``public``), the rule's thresholds (``drop``, ``rise``, ``floor``, ``bound``,
``step``, ``fine_step``, ``max_pixel_change``, ``turn_tolerance``), ``frames``, ``upper_frames``,
``direction`` (``unit``/``gradient``). Maps are (N, H, W), non-negative, from ``maps.py``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from audit.counterfactual.explain import ShiftOptions, explain_batch, preprocessing
from audit.counterfactual.search import rule as search_rule
from audit.counterfactual.storage import check_autoencoder, load_autoencoder
from audit.errors import AuditError
from audit.models.classifier import Classifier
from audit.saliency.base import SaliencyMethod, methods
from audit.saliency.options import MethodOption

#: what each λ search threshold means (``audit methods``)
RULE_THRESHOLDS = {
    "drop": "stop lowering λ once the prediction fell by this much",
    "rise": "stop raising λ once the prediction rose by this much (none: no upper search)",
    "floor": "stop once the prediction is within this of 0 (or 1)",
    "bound": "largest |λ| searched",
    "step": "λ step",
    "fine_step": "λ step while |λ| < step (none: no fine steps)",
    "max_pixel_change": "stop once Σ|x_0 − x_λ| / Σ|x_0| exceeds this (none: no limit)",
    "turn_tolerance": "stop when the prediction turns back by more than this",
}

_loaded: dict[tuple[str, tuple[int, int, int]], nn.Module] = {}


def checked_autoencoder(spec: str | Path, shape: tuple[int, int, int]) -> nn.Module:
    """Load (once per process) and check an autoencoder against the classifier's input shape."""
    key = (str(spec), tuple(shape))
    if key not in _loaded:
        autoencoder = load_autoencoder(spec)
        check_autoencoder(autoencoder, shape, str(spec))
        # Channels-last weights send every convolution of E and D to oneDNN's NHWC kernels:
        # measured 1.5-2x faster counterfactuals on CPU (nearest upsampling 8x faster).
        autoencoder = autoencoder.to(memory_format=torch.channels_last)
        _loaded[key] = autoencoder
    return _loaded[key]


class LatentShift(SaliencyMethod):
    """M = the ``map`` of the Latent Shift frames for the target class (see ``maps.py``)."""

    map: ClassVar[str]
    option_help: ClassVar[dict[str, str]] = {
        "autoencoder": "required: AE.pt (a TorchScript file from `audit train-autoencoder`) or ENC.onnx,DEC.onnx",
        "rule": "λ search rule: paper or public (its thresholds below override the rule's)",
        "frames": "frames between the two λ bounds",
        "upper_frames": "frames on the side that raises the prediction",
        "direction": "unit (normalised gradient step) or gradient (the raw gradient)"}

    @classmethod
    def extra_options(cls) -> list[MethodOption]:
        """The λ search rule's thresholds (``SearchRule``), given as ``**thresholds``."""
        paper = search_rule("paper")
        return [MethodOption(field.name, str(field.type), getattr(paper, field.name), RULE_THRESHOLDS[field.name])
                for field in dataclasses.fields(paper) if field.name != "name"]

    def __init__(
        self,
        autoencoder: str | None = None,
        rule: str = "paper",
        frames: int = 10,
        upper_frames: int = 3,
        direction: str = "unit",
        **thresholds: Any,
    ) -> None:
        if not autoencoder:
            name = f"latentshift-{self.map}"
            raise AuditError(f"method {name} needs an autoencoder: --option {name}.autoencoder=AE.pt (see audit train-autoencoder)")
        self.autoencoder = autoencoder
        self.options = ShiftOptions(rule=search_rule(rule, **thresholds), frames=frames, upper_frames=upper_frames, direction=direction)

    def passes(self, shape: tuple[int, int, int]) -> int:
        """At most: the λ search's steps in both directions, then the frames (each a decode and a forward pass)."""
        return 2 * math.ceil(self.options.rule.steps) + self.options.frames + self.options.upper_frames

    def attribute(self, model: Classifier, x: torch.Tensor, target: torch.Tensor) -> np.ndarray:
        autoencoder = checked_autoencoder(self.autoencoder, model.spec.shape)
        scale, offset = preprocessing(model)
        images = (x.detach() - offset) / scale
        return explain_batch(model, autoencoder, images, target, self.options, maps=(self.map,)).maps[self.map]


for _map in ("max", "mean", "minmax", "sliding"):
    methods.register(f"latentshift-{_map}")(type(f"LatentShift{_map.title()}", (LatentShift,), {"map": _map}))
