"""A classifier cut at its last spatial feature map, with a WILDCAT head after the cut.

The cut is the layer ``audit.models.feature_map.head_feature_map`` finds on the classifier's
hookable model (``Classifier.layered``): the input of the global pooling that feeds the head,
Grad-CAM's default layer. ``WildcatNet`` runs a deep copy of that model (the *trunk*) and reads
the cut layer's output with a forward hook registered for the call (so it sees what any hook
registered before it, e.g. an inserted BatchNorm, made of it); the trunk's old head still
runs, its output unused: no gradient reaches its parameters, and every exporter drops the
unused nodes (``export``), so the written model does not contain it.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from audit.errors import AuditError
from audit.finetune.normalisation import batched, inner
from audit.finetune.wildcat.head import DEFAULTS, WildcatHead
from audit.models.classifier import Classifier
from audit.models.feature_map import head_feature_map
from audit.models.layer_names import inner_model


class WildcatNet(nn.Module):
    """``forward(x)`` → (logits (N, K), class_maps (N, K, h, w)): ``trunk`` up to ``layer``'s
    output, then ``head``. ``trunk`` may be replaced by a ``normalisation.WithBatchNorm`` around
    it (its layers keep their names)."""

    def __init__(self, trunk: nn.Module, layer: str, head: WildcatHead) -> None:
        super().__init__()
        self.trunk, self.layer, self.head = trunk, layer, head

    def cut(self) -> nn.Module:
        return inner_model(inner(self.trunk)).get_submodule(self.layer)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's feature map at the cut, (N, C, h, w)."""
        seen: list[torch.Tensor] = []
        handle = self.cut().register_forward_hook(lambda module, args, output: seen.append(output))
        try:
            self.trunk(x)
        finally:
            handle.remove()
        if len(seen) != 1:
            raise AuditError(f"the cut layer {self.layer!r} ran {len(seen)} times in one forward pass; it must run once")
        return seen[0]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.features(x))


def cut_point(classifier: Classifier, trunk: nn.Module) -> tuple[str, tuple[int, int, int]]:
    """(layer name, (C, h, w)) of ``trunk``'s last spatial feature map; AuditError (one line) when
    it has none. Called on the copy that trains: for a torch.export program it inserts a tap."""
    probe = torch.zeros((1, *classifier.spec.shape), device=classifier.device)
    try:
        found = head_feature_map(trunk, probe)
    except AuditError as exc:
        raise AuditError(f"{classifier.path}: {exc}, so it has no spatial feature map to cut at; WILDCAT needs a "
                         f"convolutional network whose head pools an (N, C, H, W) map (not an MLP, nor a "
                         f"transformer without a spatial grid)") from exc
    return found.layer, found.shape


def build_wildcat(classifier: Classifier, *, maps: int = DEFAULTS["maps"], k_max: float = DEFAULTS["k_max"],
                  k_min: float = DEFAULTS["k_min"], alpha: float = DEFAULTS["alpha"], seed: int = 0) -> WildcatNet:
    """The classifier's hookable model (a deep copy, run as one batch: ``normalisation.batched``)
    cut at its last spatial feature map, with a ``WildcatHead`` (weights drawn from ``seed``)
    for its K classes. AuditError for no cut point, M < 1, α < 0, or k⁺ / k⁻ larger than h·w."""
    head_options = {"maps": maps, "k_max": k_max, "k_min": k_min, "alpha": alpha}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = torch.rand((3, *classifier.spec.shape)).to(classifier.device)
        trunk = batched(copy.deepcopy(classifier.layered), probe, str(classifier.path)).eval()
        layer, (channels, h, w) = cut_point(classifier, trunk)
        head = WildcatHead(channels, classifier.num_classes, **head_options)
    head.counts(h, w)
    return WildcatNet(trunk, layer, head.to(classifier.device)).eval()
