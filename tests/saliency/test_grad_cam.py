"""grad-cam and guided-grad-cam against captum; layer choice and its errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import GuidedGradCam, LayerAttribution, LayerGradCam
from torch import nn

from audit.errors import AuditError
from audit.models.classifier import from_module
from audit.models.spec import InputSpec
from audit.saliency import methods

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def captum_grad_cam(module, layer, x, target):
    cam = LayerGradCam(module, layer).attribute(x, target=target, relu_attributions=True)
    return LayerAttribution.interpolate(cam, tuple(x.shape[2:]), "bilinear")[:, 0].detach()


def test_default_layer_is_the_last_conv(case):
    expected = captum_grad_cam(case.module, case.module.conv2, case.x, case.target)
    maps = methods.get("grad-cam")().attribute(case.model, case.x, case.target)
    np.testing.assert_allclose(maps, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert (maps >= 0).all() and (maps > 0).any()


def test_named_layer(case):
    expected = captum_grad_cam(case.module, case.module.conv1, case.x, case.target)
    maps = methods.get("grad-cam")(layer="conv1").attribute(case.model, case.x, case.target)
    np.testing.assert_allclose(maps, expected.numpy(), rtol=1e-5, atol=1e-6)
    default = methods.get("grad-cam")().attribute(case.model, case.x, case.target)
    assert not np.allclose(maps, default)


def test_unknown_layer_lists_valid_layers(case):
    with pytest.raises(AuditError, match=r"no layer 'conv9'; valid: conv1, bn, relu1, conv2"):
        methods.get("grad-cam")(layer="conv9").attribute(case.model, case.x, case.target)


def test_numeric_layer_name_from_the_command_line():
    module = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32, 2))
    model = from_module(module, InputSpec(1, 4, 4), ["a", "b"])
    x, target = torch.randn(2, 1, 4, 4), torch.tensor([0, 1])
    expected = captum_grad_cam(module, module[0], x, target)
    maps = methods.get("grad-cam")(layer=0).attribute(model, x, target)
    np.testing.assert_allclose(maps, expected.numpy(), rtol=1e-5, atol=1e-6)


def test_layer_without_spatial_output_is_refused(case):
    with pytest.raises(AuditError, match="'fc'.*2-D output"):
        methods.get("grad-cam")(layer="fc").attribute(case.model, case.x, case.target)
    with pytest.raises(AuditError, match="'fc'.*cannot be upsampled"):
        methods.get("guided-grad-cam")(layer="fc").attribute(case.model, case.x, case.target)


@pytest.mark.parametrize("name", ["grad-cam", "guided-grad-cam"])
def test_model_without_conv_layer(name):
    module = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
    model = from_module(module, InputSpec(1, 4, 4), ["a", "b"])
    message = f"{name} needs a convolutional layer; model <in-memory> has none; use --method gradient"
    with pytest.raises(AuditError, match=message):
        methods.get(name)().attribute(model, torch.randn(1, 1, 4, 4), torch.tensor([0]))


@pytest.mark.parametrize("layer", [None, "conv1"])
def test_guided_grad_cam_is_signed_channel_sum(case, layer):
    module_layer = case.module.conv2 if layer is None else case.module.conv1
    expected = GuidedGradCam(case.module, module_layer).attribute(
        case.x, target=case.target, interpolate_mode="bilinear"
    )
    maps = methods.get("guided-grad-cam")(layer=layer).attribute(case.model, case.x, case.target)
    np.testing.assert_allclose(maps, expected.sum(1).detach().numpy(), rtol=1e-5, atol=1e-6)
