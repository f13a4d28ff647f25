"""Small torch classifiers and inputs for the saliency tests."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from audit.models.classifier import Classifier, from_module
from audit.models.spec import InputSpec

SIZE = 16


class SmallCNN(nn.Module):
    """Conv-BN-ReLU-Conv-ReLU-maxpool-global mean-Linear; BN has non-trivial running statistics.
    Grad-CAM's default layer is ``pool`` (6 × 8 × 8), the input of the global mean."""

    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(6, classes)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.2, 0.2)
            self.bn.running_var.uniform_(0.5, 1.5)
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-0.1, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn(self.conv1(x)))
        x = self.pool(self.relu2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


@dataclass
class Case:
    module: nn.Module
    model: Classifier
    x: torch.Tensor
    target: torch.Tensor


def make_case(channels: int, classes: int, batch: int = 3, seed: int = 0) -> Case:
    torch.manual_seed(seed)
    module = SmallCNN(channels, classes).eval()
    spec = InputSpec(channels=channels, height=SIZE, width=SIZE)
    model = from_module(module, spec, [f"class{k}" for k in range(classes)])
    x = torch.randn(batch, channels, SIZE, SIZE)
    target = torch.arange(batch) % classes
    return Case(module, model, x, target)
