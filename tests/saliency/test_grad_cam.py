"""grad-cam and guided-grad-cam against captum; layer choice and its errors."""

from __future__ import annotations

import re

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


def test_default_layer_is_the_input_of_the_global_pooling(case):
    method = methods.get("grad-cam")()
    method.prepare(case.model)
    assert method.provenance() == {"layer": {"name": "pool", "shape": [6, 8, 8], "default": True, "eager_output": "pool", "absorbed_batchnorm": False}}
    expected = captum_grad_cam(case.module, case.module.pool, case.x, case.target)
    maps = method.attribute(case.model, case.x, case.target)
    np.testing.assert_allclose(maps, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert (maps >= 0).all() and (maps > 0).any()


def test_named_layer(case):
    expected = captum_grad_cam(case.module, case.module.conv1, case.x, case.target)
    method = methods.get("grad-cam")(layer="conv1")
    maps = method.attribute(case.model, case.x, case.target)
    np.testing.assert_allclose(maps, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert method.provenance()["layer"] == {"name": "conv1", "shape": [4, 16, 16], "default": False, "eager_output": "conv1", "absorbed_batchnorm": False}
    default = methods.get("grad-cam")().attribute(case.model, case.x, case.target)
    assert not np.allclose(maps, default)


def test_unknown_layer_lists_the_closest_names(case):
    # difflib's ranking: the names most like 'conv9' first, then the count and where to see them all
    with pytest.raises(AuditError, match=r"^-o grad-cam.layer: .* has no layer 'conv9'; closest: conv2, conv1 "
                                         r"\(`audit layers MODEL` lists all 7\)$"):
        methods.get("grad-cam")(layer="conv9").prepare(case.model)


def test_numeric_layer_name_from_the_command_line():
    module = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32, 2))
    model = from_module(module, InputSpec(1, 4, 4), ["a", "b"])
    x, target = torch.randn(2, 1, 4, 4), torch.tensor([0, 1])
    expected = captum_grad_cam(module, module[0], x, target)
    maps = methods.get("grad-cam")(layer=0).attribute(model, x, target)
    np.testing.assert_allclose(maps, expected.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["grad-cam", "guided-grad-cam"])
def test_layer_without_spatial_output_is_refused_when_prepared(case, name):
    method = methods.get(name)(layer="fc")
    classes = case.model.num_classes
    message = (f"{name}: layer 'fc' of model <in-memory> gives a 2-D output (1, {classes}); choose a convolutional layer "
               f"with (N, C, H, W) activations or a transformer's (N, T, D) tokens, or leave out -o {name}.layer for "
               f"the default")
    with pytest.raises(AuditError, match=re.escape(message)):
        method.prepare(case.model)


@pytest.mark.parametrize("name", ["grad-cam", "guided-grad-cam"])
def test_a_flattening_head_reads_the_flattened_map(name):
    """A VGG-style head flattens the map into a Linear: the default layer is the map's module."""
    module = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32, 2))
    model = from_module(module, InputSpec(1, 4, 4), ["a", "b"])
    method = methods.get(name)()
    method.prepare(model)
    assert (method.chosen.name, method.chosen.shape) == ("1", (2, 4, 4))


@pytest.mark.parametrize("name", ["grad-cam", "guided-grad-cam"])
def test_model_without_global_pooling_has_no_default_layer(name):
    module = nn.Sequential(nn.Flatten(), nn.Linear(16, 2), nn.ReLU())
    model = from_module(module, InputSpec(1, 4, 4), ["a", "b"])
    message = (f"{name}: model <in-memory> flattens its input image into the head: it has no (N, C, H, W) feature "
               f"map before it, so it has no default layer; name a layer with feature maps or tokens with "
               f"-o {name}.layer=NAME (`audit layers MODEL` lists them), or use --method gradient")
    with pytest.raises(AuditError, match=re.escape(message)):
        methods.get(name)().prepare(model)


@pytest.mark.parametrize("layer", [None, "conv1"])
def test_guided_grad_cam_is_signed_channel_sum(case, layer):
    module_layer = case.module.pool if layer is None else case.module.conv1
    expected = GuidedGradCam(case.module, module_layer).attribute(
        case.x, target=case.target, interpolate_mode="bilinear"
    )
    maps = methods.get("guided-grad-cam")(layer=layer).attribute(case.model, case.x, case.target)
    np.testing.assert_allclose(maps, expected.sum(1).detach().numpy(), rtol=1e-5, atol=1e-6)
