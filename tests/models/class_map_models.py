"""A small WILDCAT-like class-map model (Durand et al. 2017) and its exports in every format:
conv backbone → 1×1 conv to M·K maps → class-wise mean → k-max + α·k-min spatial pooling;
``forward`` returns (logits (N, K), class maps (N, K, h, w)), the class-map convention."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

SIZE, CLASSES, MAPS, K, ALPHA = 16, 3, 2, 3, 0.5
FORMATS = ("onnx-legacy", "onnx-dynamo", "trace", "pt2")


class WildcatLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.classifier = nn.Conv2d(8, CLASSES * MAPS, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.classifier(self.features(x))  # reshape, not unflatten: a loaded trace's unflatten does not re-export
        maps = z.reshape(-1, CLASSES, MAPS, z.shape[2], z.shape[3]).mean(2)
        flat = maps.flatten(2)
        scores = flat.topk(K, dim=2).values.mean(2) + ALPHA * flat.topk(K, dim=2, largest=False).values.mean(2)
        return scores, maps


def build() -> WildcatLike:
    """Seeded weights, BatchNorm statistics away from the identity, eval mode."""
    torch.manual_seed(0)
    model = WildcatLike()
    with torch.no_grad():
        bn = model.features[1]
        bn.running_mean.uniform_(-0.3, 0.3)
        bn.running_var.uniform_(0.5, 1.5)
        model.classifier.weight.mul_(4.0)
    return model.eval()


def export(model: nn.Module, how: str, stem: Path, size: int = SIZE) -> Path:
    """``model`` written as ``how`` (one of ``FORMATS``) with a dynamic batch; ONNX outputs named
    ``logits`` and ``class_maps``, input ``input``."""
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    names = {"input_names": ["input"], "output_names": ["logits", "class_maps"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if how == "onnx-legacy":
            path = stem.with_suffix(".onnx")
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, **names,
                              dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}, "class_maps": {0: "n"}})
        elif how == "onnx-dynamo":
            path = stem.with_suffix(".onnx")
            program = torch.onnx.export(model, (x,), dynamo=True, verbose=False, **names,
                                        dynamic_shapes=({0: torch.export.Dim("batch")},))
            program.save(str(path))
        elif how == "trace":
            path = stem.with_suffix(".pt")
            torch.jit.trace(model, (x,)).save(str(path))
        else:
            path = stem.with_suffix(".pt2")
            torch.export.save(torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},)),
                              str(path))
    return path
