"""actdiff's layers: the pooled features by default, pre-activation for named layers, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from audit.errors import AuditError
from audit.finetune.layers import LayerTaps, resolve_layers, valid_layer_names
from audit.models.loader import ModelOptions, load_classifier

torch.set_num_threads(1)
SAMPLES = Path(__file__).resolve().parents[2] / "sample_models"


@pytest.fixture(scope="module")
def onnx_twin() -> nn.Module:
    return load_classifier(SAMPLES / "biased.onnx").differentiable


def test_features_are_the_input_of_the_last_linear(onnx_twin: nn.Module) -> None:
    taps = LayerTaps(onnx_twin, ["features"])
    x = torch.rand(3, 1, 28, 28)
    with taps.recording():
        logits = onnx_twin(x)
    (features,) = taps.taken()
    assert features.shape == (3, 32)
    fc = onnx_twin.fc
    assert torch.allclose(nn.functional.linear(features, fc.weight, fc.bias), logits, atol=1e-5)


def test_naming_a_relu_reads_its_input(onnx_twin: nn.Module) -> None:
    (name, module, where), = resolve_layers(onnx_twin, ["layers.0.relu"])
    assert isinstance(module, nn.ReLU) and where == "input"
    taps = LayerTaps(onnx_twin, ["layers.0.relu"])
    with taps.recording():
        onnx_twin(torch.rand(2, 1, 28, 28))
    assert (taps.taken()[0] < 0).any()  # pre-activation: negative values survive


def test_a_conv_followed_by_batchnorm_reads_the_batchnorm_output() -> None:
    twin = load_classifier(SAMPLES / "biased.pt", ModelOptions(input_size=(28, 28), channels=1)).layered
    conv = next(n for n in valid_layer_names(twin) if n.endswith("conv1"))
    (_, module, where), = resolve_layers(twin, [conv])
    assert isinstance(module, nn.modules.batchnorm._BatchNorm) and where == "output"


def test_an_unknown_layer_lists_the_valid_ones(onnx_twin: nn.Module) -> None:
    with pytest.raises(AuditError, match=r"--layers 'layer9': no such layer; closest: .*\(`audit layers MODEL` lists all \d+\)"):
        LayerTaps(onnx_twin, ["layer9"])
