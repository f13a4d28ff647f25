"""The cut point (``head_feature_map``: Grad-CAM's default layer, where a WILDCAT head goes) on
ResNet-, DenseNet- and VGG-style graphs from both ONNX exporters, TorchScript and torch.export,
checked against the eager module's own feature map; models without one are one line."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from audit.errors import AuditError
from audit.models.classifier import from_module
from audit.models.feature_map import head_feature_map
from audit.models.loader import ModelOptions, load_classifier
from audit.models.spec import InputSpec
from audit.saliency.layers import feature_layer
from tests.models.native_zoo import TinyViT
from tests.models.zoo.architectures import SIZE, make
from tests.models.zoo.exports import EXPORTS, write

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

EXPORTERS = ("onnx17", "dynamo", "trace", "pt2")
VGG_SIZE = 28


class TorchvisionVGG(nn.Module):
    """torchvision's VGG layout: features end in a MaxPool2d, then AdaptiveAvgPool2d((7, 7)) of the
    7 × 7 map and a flatten into the classifier, no global pooling. The cut: the last ReLU (14 × 14)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(nn.Linear(16 * 49, 32), nn.ReLU(inplace=True), nn.Dropout(), nn.Linear(32, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def expected(name: str, model: nn.Module) -> tuple[set[str], tuple[int, ...]]:
    """(accepted layer names, (C, h, w)) from the eager module."""
    x = torch.zeros(1, 3, VGG_SIZE if name == "vgg" else SIZE, VGG_SIZE if name == "vgg" else SIZE)
    with torch.no_grad():
        if name == "resnet_basic":
            features = model.layer3(model.layer2(model.layer1(model.maxpool(model.relu(model.bn1(model.conv1(x)))))))
            return {"layer3.1"}, tuple(features.shape[1:])
        if name == "densenet":
            return {"relu"}, tuple(F.relu(model.features(x)).shape[1:])
        return {"features.4"}, tuple(model.features[:5](x).shape[1:])


@pytest.mark.parametrize("how", EXPORTERS)
@pytest.mark.parametrize("name", ["resnet_basic", "densenet", "vgg"])
def test_the_cut_is_the_feature_map_the_head_reads(tmp_path, name, how):
    torch.manual_seed(0)
    model = TorchvisionVGG().eval() if name == "vgg" else make(name)
    size = VGG_SIZE if name == "vgg" else SIZE
    path = tmp_path / f"model{EXPORTS[how].suffix}"
    write(model, EXPORTS[how], path, size)
    classifier = load_classifier(path, ModelOptions(input_size=(size, size), channels=3) if how == "trace" else ModelOptions())
    names, shape = expected(name, model)
    found = head_feature_map(classifier.layered, torch.zeros(1, 3, size, size))
    assert found.shape == shape
    layer = feature_layer(classifier, None, "grad-cam")
    assert layer.name in names and layer.shape == shape, layer


def test_the_in_memory_vgg_cuts_at_the_same_layer():
    classifier = from_module(TorchvisionVGG().eval(), InputSpec(3, VGG_SIZE, VGG_SIZE), ["a", "b", "c"])
    assert feature_layer(classifier, None, "grad-cam").name == "features.4"


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def onnx_file(module: nn.Module, path: Path, size: int) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.rand(2, 3, size, size),), str(path), dynamo=False,
                          input_names=["x"], dynamic_axes={"x": {0: "n"}})
    return path


def test_an_mlp_has_no_feature_map(tmp_path):
    torch.manual_seed(0)
    for classifier in (from_module(MLP().eval(), InputSpec(3, SIZE, SIZE), ["a", "b", "c"]),
                       load_classifier(onnx_file(MLP(), tmp_path / "mlp.onnx", SIZE))):
        with pytest.raises(AuditError, match="flattens its input image into the head: it has no \\(N, C, H, W\\) "
                                             "feature map before it, so it has no default layer") as info:
            feature_layer(classifier, None, "grad-cam")
        assert "\n" not in str(info.value)


def test_a_vit_has_no_spatial_cut(tmp_path):
    """Its tokens are read through attention into a class token: no (N, C, H, W) map (Grad-CAM
    falls back to a token layer; a WILDCAT head does not)."""
    torch.manual_seed(0)
    classifier = load_classifier(onnx_file(TinyViT(), tmp_path / "vit.onnx", TinyViT.size))
    with pytest.raises(AuditError, match="has no global pooling over H and W, nor a flattened \\(N, C, H, W\\) "
                                         "feature map, before its classifier head"):
        head_feature_map(classifier.layered, torch.zeros(1, 3, TinyViT.size, TinyViT.size))
