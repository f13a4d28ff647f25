"""Class-map models (WILDCAT convention): (logits, class maps) in ONNX (both exporters),
TorchScript and torch.export, loaded and checked against the eager module."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from audit.errors import AuditError
from audit.models.loader import ModelOptions, load_classifier
from audit.saliency.layers import feature_layer
from tests.models.class_map_models import CLASSES, FORMATS, SIZE, build, export

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    torch.set_num_threads(1)
    root, model = tmp_path_factory.mktemp("class-maps"), build()
    return {how: export(model, how, root / how) for how in FORMATS}


def load(path: Path):
    return load_classifier(path, ModelOptions(input_size=(SIZE, SIZE), channels=3) if path.suffix == ".pt" else ModelOptions())


@pytest.mark.parametrize("how", FORMATS)
def test_logits_and_class_maps_match_the_eager_module(files, how):
    model, x = build(), torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, maps = model(x)
    classifier = load(files[how])
    assert maps.shape == (3, CLASSES, SIZE // 2, SIZE // 2)
    torch.testing.assert_close(classifier.logits(x), logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(classifier.class_maps(x), maps, atol=1e-5, rtol=1e-5)
    for module in (classifier.differentiable, classifier.layered):  # the logits alone, differentiable
        leaf = x.clone().requires_grad_(True)
        out = module(leaf)
        torch.testing.assert_close(out.detach(), logits, atol=1e-5, rtol=1e-5)
        out[:, 1].sum().backward()
        assert leaf.grad.abs().sum() > 0
    assert classifier.twin_check is not None
    assert "classifier" in classifier.layer_names()  # the 1×1 convolution, no "model." prefix
    layer = feature_layer(classifier, None, "grad-cam")  # the class maps the spatial pooling reads
    assert layer.default and layer.shape == (CLASSES, SIZE // 2, SIZE // 2)


def test_an_ordinary_model_has_no_class_maps(tiny_model_files):
    assert load_classifier(tiny_model_files["onnx"]).class_maps is None


class ThreeOutputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor):
        maps = self.conv(x)
        return maps.mean((2, 3)), maps, maps.amax((2, 3))


class OtherShapes(ThreeOutputs):
    def forward(self, x: torch.Tensor):  # (N, 2) and (N, 2, H): not (N, K, h, w)
        maps = self.conv(x)
        return maps.mean((2, 3)), maps.mean(3)


@pytest.mark.parametrize("module", [ThreeOutputs, OtherShapes])
@pytest.mark.parametrize("how", ["onnx", "pt2"])
def test_other_several_output_models_keep_the_one_line_error(tmp_path, module, how):
    torch.manual_seed(0)
    x, model = torch.rand(2, 3, SIZE, SIZE), module().eval()
    path = tmp_path / f"m.{how}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if how == "onnx":
            torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["input"])
        else:
            torch.export.save(torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("n")},)), str(path))
    with pytest.raises(AuditError, match="not one \\(batch, classes\\) logits tensor; export a wrapper") as info:
        load_classifier(path)
    assert "\n" not in str(info.value)
