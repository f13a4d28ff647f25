"""The cut point of ``build_wildcat`` on ResNet-, DenseNet- and VGG-style models; an MLP is a one-line error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from audit.errors import AuditError
from audit.finetune.wildcat.network import build_wildcat
from audit.models.classifier import from_module
from audit.models.loader import ModelOptions, load_classifier
from audit.models.spec import InputSpec
from tests.conftest import export_onnx
from tests.finetune.zoo import ResNet

SPEC = InputSpec(1, 28, 28)


class DenseNetStyle(nn.Module):
    """Two dense layers (BN-ReLU-conv, concatenated), transition, final BN, ReLU, pool, linear (as torchvision)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, 2, 1)
        self.dense1 = nn.Sequential(nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1))
        self.dense2 = nn.Sequential(nn.BatchNorm2d(12), nn.ReLU(), nn.Conv2d(12, 4, 3, padding=1))
        self.norm5 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.classifier = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.cat([x, self.dense1(x)], 1)
        x = torch.cat([x, self.dense2(x)], 1)
        x = self.relu(self.norm5(x))
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class VGGStyle(nn.Module):
    """conv-ReLU-pool stacks, AdaptiveAvgPool2d((3, 3)), flatten, a two-layer classifier (torchvision's VGG, small)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.avgpool = nn.AdaptiveAvgPool2d((3, 3))
        self.classifier = nn.Sequential(nn.Linear(16 * 9, 32), nn.ReLU(), nn.Linear(32, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 16), nn.ReLU(), nn.Linear(16, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _built(module: nn.Module, classes: list[str]):
    torch.manual_seed(0)
    classifier = from_module(module.eval(), SPEC, classes)
    return classifier, build_wildcat(classifier, maps=2, k_max=1, k_min=1, alpha=0.7)


def _expected_features(module: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    seen = []
    handle = layer.register_forward_hook(lambda m, a, out: seen.append(out))
    with torch.no_grad():
        module(x)
    handle.remove()
    return seen[-1]


@pytest.mark.parametrize(("make", "layer", "shape"), [
    (lambda: ResNet((8, 16), blocks=1), "features.4.relu", (16, 7, 7)),  # the last residual block's ReLU
    (DenseNetStyle, "relu", (16, 14, 14)),                             # the final BN-ReLU
])
def test_the_cut_is_the_map_the_global_pooling_reads(make, layer: str, shape: tuple[int, int, int]) -> None:
    module = make().eval()
    classifier, net = _built(module, ["a", "b", "c"][: module(torch.zeros(1, 1, 28, 28)).shape[1]])
    assert net.layer == layer
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    expected = _expected_features(module, dict(module.named_modules())[layer], x)
    with torch.no_grad():
        features = net.features(x)
        scores, maps = net(x)
    assert tuple(features.shape[1:]) == shape and torch.allclose(features, expected)
    assert scores.shape == (3, classifier.num_classes) and maps.shape == (3, classifier.num_classes, *shape[1:])
    net(x)[0].sum().backward()  # the old head gets no gradient; the trunk does
    grads = {name: p.grad for name, p in net.named_parameters()}
    old_head = [name for name in grads if name.startswith(("trunk.fc.", "trunk.classifier."))]
    assert old_head and all(grads[name] is None for name in old_head)
    assert grads["head.transfer.weight"] is not None and any(grads[n] is not None for n in grads if n.endswith("0.weight"))


@pytest.mark.xfail(strict=True, reason="VGG-style heads without a global pooling: helper A's head_feature_map extension (wc-A)")
def test_a_vgg_style_model_is_cut_at_the_input_of_its_adaptive_pooling() -> None:
    module = VGGStyle().eval()
    _, net = _built(module, ["a", "b"])
    assert net.layer == "features.5"
    with torch.no_grad():
        assert net(torch.rand(2, 1, 28, 28))[1].shape == (2, 2, 7, 7)


def test_the_cut_on_onnx_files_of_both_exporters(tmp_path: Path) -> None:
    """A ResNet as ONNX (legacy, BatchNorm folded) and TorchScript: the twin is cut at the same block."""
    torch.manual_seed(0)
    module = ResNet((8, 16), blocks=1).eval()
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    expected = _expected_features(module, module.features[4], x)
    torch.jit.script(module).save(str(tmp_path / "resnet.pt"))
    for path in (export_onnx(module, tmp_path / "resnet.onnx"), tmp_path / "resnet.pt"):
        classifier = load_classifier(path, ModelOptions(input_size=(28, 28), channels=1))
        net = build_wildcat(classifier, maps=2, k_max=1, k_min=0, alpha=0)
        with torch.no_grad():
            assert torch.allclose(net.features(x), expected, atol=1e-5), path.name


def test_an_mlp_has_no_cut_point() -> None:
    with pytest.raises(AuditError) as caught:
        _built(MLP(), ["a", "b"])
    message = str(caught.value)
    assert "no spatial feature map to cut at" in message and "\n" not in message


def test_k_larger_than_the_map_is_refused_when_building() -> None:
    with pytest.raises(AuditError, match="--k-max 50: larger than the feature map's 49 regions"):
        build_wildcat(from_module(ResNet((8, 16), blocks=1).eval(), SPEC, ["a", "b"]), k_max=50)
