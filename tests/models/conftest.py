"""Small ResNet- and DenseNet-style classifiers and their ONNX exports, cached per session."""

from __future__ import annotations

import io
import warnings
from typing import Callable

import onnx
import pytest
import torch
from torch import nn

# The dynamo exporter emits opset 18 at least (down-conversion to 13/17 fails on
# ReduceMean's axes input and falls back to 18), so it is tested at 18 and 20.
EXPORTS = [("legacy", 13), ("legacy", 17), ("legacy", 20), ("dynamo", 18), ("dynamo", 20)]
SHAPE = (3, 16, 16)


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.down is None else self.down(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + identity)


class TinyResNet(nn.Module):
    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2))
        self.layer1 = nn.Sequential(Block(8, 8), Block(8, 16, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layer1(self.stem(x))), 1))


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(cin, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.conv(self.relu(self.norm(x)))], 1)


class TinyDenseNet(nn.Module):
    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.block1 = nn.Sequential(DenseLayer(8, 4), DenseLayer(12, 4))
        self.transition = nn.Sequential(nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 8, 1, bias=False), nn.AvgPool2d(2))
        self.block2 = nn.Sequential(DenseLayer(8, 4))
        self.norm = nn.BatchNorm2d(12)
        self.classifier = nn.Linear(12, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.block2(self.transition(self.block1(self.conv0(x)))))
        x = torch.relu(x).mean(dim=(2, 3))
        return self.classifier(x)


def make_model(name: str) -> nn.Module:
    """Seeded model with non-trivial BatchNorm statistics (so folding mistakes show)."""
    torch.manual_seed(0)
    model = {"resnet": TinyResNet, "densenet": TinyDenseNet}[name]()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def export(model: nn.Module, exporter: str, opset: int) -> onnx.ModelProto:
    """Export as a user would: default optimisations, dynamic batch."""
    x = torch.randn(2, *SHAPE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "legacy":
            buffer = io.BytesIO()
            torch.onnx.export(model, (x,), buffer, dynamo=False, opset_version=opset, input_names=["x"],
                              output_names=["logits"], dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
            return onnx.load_from_string(buffer.getvalue())
        program = torch.onnx.export(model, (x,), dynamo=True, opset_version=opset, verbose=False,
                                    input_names=["x"], output_names=["logits"],
                                    dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
        return program.model_proto


@pytest.fixture(scope="session")
def exported() -> Callable[[str, str, int], tuple[nn.Module, onnx.ModelProto]]:
    cache: dict[tuple[str, str, int], tuple[nn.Module, onnx.ModelProto]] = {}

    def get(name: str, exporter: str, opset: int) -> tuple[nn.Module, onnx.ModelProto]:
        key = (name, exporter, opset)
        if key not in cache:
            model = make_model(name)
            cache[key] = (model, export(model, exporter, opset))
        return cache[key]

    return get
