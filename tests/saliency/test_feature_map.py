"""Grad-CAM's default layer: the input of the global pooling before the head, from the graph.

Every head is checked twice: on the ONNX interpreter twin (the model exported to ONNX and
loaded as ``audit run`` loads it) and on the in-memory module (``torch.fx`` trace); both must
name the same module. The three formats of one sample model must agree as well.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from audit.errors import AuditError
from audit.models.classifier import from_module
from audit.models.loader import ModelOptions, load_classifier
from audit.models.spec import InputSpec
from audit.saliency import methods
from audit.saliency.layers import FeatureLayer, feature_layer

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SAMPLES = Path(__file__).resolve().parents[2] / "sample_models"
SIZE = 8
HEADS = {
    "adaptive average": lambda a: F.adaptive_avg_pool2d(a, 1).flatten(1),
    "mean over H, W": lambda a: a.mean(dim=(2, 3)),
    "max over H, W": lambda a: a.amax(dim=(2, 3)),
    "adaptive max": lambda a: F.adaptive_max_pool2d(a, 1).flatten(1),
    "average window = map": lambda a: F.avg_pool2d(a, SIZE // 2).flatten(1),
    "max window = map": lambda a: F.max_pool2d(a, SIZE // 2).flatten(1),
    "average and max concatenated": lambda a: torch.cat([a.mean(dim=(2, 3)), a.amax(dim=(2, 3))], 1)[:, :4],
}


class Net(nn.Module):
    """conv → ReLU → squeeze-and-excitation (a global pooling inside the body) → conv (stride 2)
    → ``act`` → ``head`` pooling → Linear: the default layer is ``act``, 4 × 4 × 4."""

    def __init__(self, head) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.squeeze = nn.Linear(4, 4)
        self.conv2 = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4, 2)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu(self.conv(x))
        a = a * torch.sigmoid(self.squeeze(a.mean(dim=(2, 3))))[:, :, None, None]
        return self.fc(self.head(self.act(self.conv2(a))))


def both_ways(module: nn.Module, tmp_path: Path) -> list:
    """The module as an in-memory classifier and as an ONNX file's twin (legacy exporter)."""
    torch.manual_seed(0)
    module = module.eval()
    path = tmp_path / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.rand(2, 1, SIZE, SIZE),), str(path), dynamo=False,
                          input_names=["x"], dynamic_axes={"x": {0: "n"}})
    return [from_module(module, InputSpec(1, SIZE, SIZE), ["a", "b"]), load_classifier(path)]


@pytest.mark.parametrize("head", HEADS.values(), ids=HEADS.keys())
def test_the_default_layer_is_the_input_of_the_last_global_pooling(head, tmp_path):
    for model in both_ways(Net(head), tmp_path):
        assert feature_layer(model, None, "grad-cam") == FeatureLayer("act", (4, 4, 4), True, eager_output="act"), model.format


def test_pooling_two_different_maps_is_ambiguous(tmp_path):
    class TwoBranches(Net):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = self.relu(self.conv(x))
            return self.fc(a.mean(dim=(2, 3)) + self.act(self.conv2(a)).mean(dim=(2, 3)))

    for model in both_ways(TwoBranches(None), tmp_path):
        with pytest.raises(AuditError, match="has 2 global poolings or flattens of different feature maps before its head, so it "
                                             "has no default layer; name a layer with feature maps or tokens with -o grad-cam.layer"):
            feature_layer(model, None, "grad-cam")


def test_a_token_model_has_no_global_pooling(tmp_path):
    class Tokens(nn.Module):
        """Patch embedding, then the tokens' mean (over a 3-D tensor), then a Linear head, as a ViT."""

        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Conv2d(1, 4, 4, stride=4)
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.embed(x).flatten(2).transpose(1, 2).mean(dim=1))

    for model in both_ways(Tokens(), tmp_path):
        with pytest.raises(AuditError, match="has no global pooling over H and W, nor a flattened"):
            feature_layer(model, None, "grad-cam")


def test_a_pooled_function_output_is_not_a_layer():
    class Functional(Net):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.relu(self.conv2(self.relu(self.conv(x)))).mean(dim=(2, 3)))

    model = from_module(Functional(None).eval(), InputSpec(1, SIZE, SIZE), ["a", "b"])
    with pytest.raises(AuditError, match="pools a tensor that no module of its own outputs"):
        feature_layer(model, None, "grad-cam")


@pytest.fixture(scope="module")
def sample_formats() -> dict:
    torch.set_num_threads(1)
    torchscript = ModelOptions(input_size=(28, 28), channels=1)
    return {name: load_classifier(SAMPLES / name, torchscript if name.endswith(".pt") else ModelOptions())
            for name in ("biased.onnx", "biased_legacy.onnx", "biased.pt", "biased.pt2")}


def test_grad_cam_layer_agreement_across_the_formats_of_one_model(sample_formats):
    """Before, the default (the last Conv2d registered) was layer4's shortcut projection, and a
    different one per format (BatchNorm folded into it or not). The .pt2 file is its own module
    tree: the layer is the block whose forward ends in that ReLU, by its path in the code."""
    from audit.data.synthetic import generate_split

    x = torch.from_numpy(generate_split("valid", 6, seed=0, box="biased").images[:, None])
    target = torch.tensor([0, 1, 0, 1, 0, 1])
    maps = {}
    for name, model in sample_formats.items():
        method = methods.get("grad-cam")()
        method.prepare(model)
        layer = "layers.3"  # every format: the twin's block layers.3 ends in the node layers.3.relu_1
        assert method.provenance()["layer"] == {"name": layer, "shape": [32, 2, 2], "default": True,
                                                "eager_output": layer, "absorbed_batchnorm": False}, name
        maps[name] = method.attribute(model, x, target)
    reference = maps.pop("biased.onnx")
    for name, other in maps.items():
        np.testing.assert_allclose(other, reference, atol=1e-5 * reference.max(), err_msg=name)


def test_a_layer_without_spatial_output_stops_the_run_before_any_image(synthetic_root, tmp_path, capsys):
    from audit.cli.main import main

    valid, out = synthetic_root / "valid", tmp_path / "out"
    code = main(["run", str(SAMPLES / "biased.onnx"), "--data", str(valid / "images"), "--out", str(out), "--quiet",
                 "-m", "gradient", "-m", "grad-cam", "-o", "grad-cam.layer=fc"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "grad-cam: layer 'fc' of model" in err and "gives a 2-D output (1, 2)" in err
    assert not (out / "per_image.partial.csv").exists()  # written from the first batch on
