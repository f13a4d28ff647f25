"""Small models whose TorchScript or torch.export files the ONNX route could not audit (issue 14):
each in plain torch, random weights, 1-3 channels, 16-20 px."""

from __future__ import annotations

from pathlib import Path
from typing import List

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + x)


class ResNetStyle(nn.Module):
    """Basic blocks with BatchNorm and identity shortcuts."""

    size = 16

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.layer1 = nn.Sequential(Block(8), Block(8))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layer1(self.stem(x))), 1))


class DenseLayer(nn.Module):
    def __init__(self, inputs: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(inputs)
        self.conv = nn.Conv2d(inputs, 4, 3, padding=1)

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        return self.conv(F.relu(self.norm(torch.cat(features, 1))))


class DenseNetStyle(nn.Module):
    """Each layer reads ``torch.cat`` of a list of every earlier output."""

    size = 16

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.dense = nn.ModuleList([DenseLayer(4), DenseLayer(8)])
        self.fc = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [self.stem(x)]
        for layer in self.dense:
            features.append(layer(features))
        return self.fc(torch.cat(features, 1).mean((2, 3)))


class GroupNormNet(nn.Module):
    size = 16

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.GroupNorm(2, 8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.norm(self.conv(x))).mean((2, 3)))


class Upsampling(nn.Module):
    """``F.interpolate`` between convolutions (the legacy exporter fails on it when scripted)."""

    size = 16

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.up = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.interpolate(F.relu(self.down(x)), scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.fc(F.relu(self.up(y)).mean((2, 3)))


class VGGStyle(nn.Module):
    """``AdaptiveAvgPool2d((7, 7))`` at 20 px: 20 is not a multiple of 7."""

    size = 20

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Linear(4 * 49, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class TinyViT(nn.Module):
    """4×4 patches, a class token, one pre-norm ``nn.MultiheadAttention`` block."""

    size = 16

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, 8) * 0.1)
        self.position = nn.Parameter(torch.randn(1, 17, 8) * 0.1)
        self.norm1 = nn.LayerNorm(8)
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)
        self.norm2 = nn.LayerNorm(8)
        self.mlp = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 8))
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], 1) + self.position
        h = self.norm1(tokens)
        tokens = tokens + self.attention(h, h, h, need_weights=False)[0]
        tokens = tokens + self.mlp(self.norm2(tokens))
        return self.head(tokens[:, 0])


MODELS = {"resnet": ResNetStyle, "densenet": DenseNetStyle, "groupnorm": GroupNormNet, "upsampling": Upsampling,
          "vgg": VGGStyle, "vit": TinyViT}
EXPORTS = ("script", "trace", "export-dynamic", "export-batch1")


def build(name: str) -> nn.Module:
    """The model with seeded random weights and BatchNorm statistics that are not the identity."""
    torch.manual_seed(0)
    model = MODELS[name]()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model.eval()


def save(model: nn.Module, how: str, path_stem: Path) -> Path:
    """Write ``model`` as ``how`` (one of ``EXPORTS``); returns the file."""
    example = torch.rand(2 if how != "export-batch1" else 1, 3, model.size, model.size,
                         generator=torch.Generator().manual_seed(0))
    if how == "script":
        path = path_stem.with_suffix(".pt")
        torch.jit.script(model).save(str(path))
    elif how == "trace":
        path = path_stem.with_suffix(".pt")
        torch.jit.trace(model, example, check_trace=False).save(str(path))
    else:
        path = path_stem.with_suffix(".pt2")
        dynamic = {"x": {0: torch.export.Dim("batch", min=1, max=64)}} if how == "export-dynamic" else None
        torch.export.save(torch.export.export(model, (example,), dynamic_shapes=dynamic), str(path))
    return path
