"""The differentiable ONNX twin on whole models: ResNet- and DenseNet-style classifiers
exported by both exporters, the TorchScript and torch.export routes, write-back, errors."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from audit.models.onnx_graph import UnsupportedOperatorError, build_torch_twin, write_back
from audit.models.onnx_graph.naming import assign_names, dotted, module_path, parameter_owner, sanitize
from audit.models.to_onnx import exported_program_to_onnx, torchscript_to_onnx
from tests.models.conftest import EXPORTS, SHAPE, make_model

MODELS = ["resnet", "densenet"]
CASES = [(m, e, o) for m in MODELS for e, o in EXPORTS]
IDS = [f"{m}-{e}-opset{o}" for m, e, o in CASES]


def ort_logits(model: onnx.ModelProto, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def count(model: onnx.ModelProto, op: str) -> int:
    return sum(n.op_type == op for n in model.graph.node)


@pytest.mark.parametrize(("name", "exporter", "opset"), CASES, ids=IDS)
def test_twin_matches_onnxruntime_at_any_batch(exported, name: str, exporter: str, opset: int) -> None:
    _, model = exported(name, exporter, opset)
    twin = build_torch_twin(model)
    for batch in (1, 5):
        x = torch.randn(batch, *SHAPE)
        with torch.no_grad():
            got = twin(x).numpy()
        np.testing.assert_allclose(got, ort_logits(model, x), atol=1e-4, rtol=0)


@pytest.mark.parametrize(("name", "exporter", "opset"), CASES, ids=IDS)
def test_twin_gradients_hooks_and_reinit(exported, name: str, exporter: str, opset: int) -> None:
    _, model = exported(name, exporter, opset)
    twin = build_torch_twin(model)
    x = torch.randn(3, *SHAPE, requires_grad=True)

    conv_name, conv = next((n, m) for n, m in twin.named_modules() if isinstance(m, nn.Conv2d))
    seen = []
    handle = conv.register_forward_hook(lambda mod, inp, out: seen.append(out.shape))
    logits = twin(x)
    handle.remove()
    assert seen and len(seen[0]) == 4 and seen[0][0] == 3, conv_name

    logits[:, 0].sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0

    before = logits.detach()
    for module in twin.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.reset_parameters()
    with torch.no_grad():
        assert not torch.allclose(twin(x), before, atol=1e-3)


def test_layers_are_real_torch_modules(exported) -> None:
    _, model = exported("resnet", "legacy", 17)
    twin = build_torch_twin(model)
    modules = dict(twin.named_modules())
    assert sum(isinstance(m, nn.ReLU) for m in modules.values()) == count(model, "Relu")
    assert isinstance(modules["layer1.0.conv1"], nn.Conv2d)
    assert isinstance(modules["fc"], nn.Linear)
    assert all(p.requires_grad for p in twin.parameters())
    assert twin.onnx_sources["fc.weight"].initializer == "fc.weight"
    assert twin.onnx_sources["fc.weight"].transposed is False  # Gemm transB=1 is torch layout


def test_captum_guided_backprop_and_layer_gradcam(exported) -> None:
    from captum.attr import GuidedBackprop, LayerGradCam

    _, model = exported("resnet", "dynamo", 20)
    twin = build_torch_twin(model)
    x = torch.randn(2, *SHAPE)
    guided = GuidedBackprop(twin).attribute(x, target=1)
    xp = x.clone().requires_grad_()
    plain = torch.autograd.grad(twin(xp)[:, 1].sum(), xp)[0]
    assert torch.isfinite(guided).all() and not torch.allclose(guided, plain)
    # default dynamo export fuses BN into Conv; the fused Conv carries the BN's module path
    cam = LayerGradCam(twin, twin.get_submodule("layer1.1.bn2")).attribute(x, target=1)
    assert cam.shape == (2, 1, 4, 4)


def _bn_modules(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("route", ["torchscript", "torch.export"])
def test_internal_routes_keep_batchnorm_and_match(name: str, route: str) -> None:
    module = make_model(name)
    example = torch.randn(2, *SHAPE)
    if route == "torchscript":
        model = torchscript_to_onnx(torch.jit.script(module), example)
    else:
        batch = torch.export.Dim("batch")
        model = exported_program_to_onnx(torch.export.export(module, (example,), dynamic_shapes=({0: batch},)), example)
    assert count(model, "BatchNormalization") == _bn_modules(module)
    twin = build_torch_twin(model)
    assert _bn_modules(twin) == _bn_modules(module)
    for batch_size in (1, 5):
        x = torch.randn(batch_size, *SHAPE)
        with torch.no_grad():
            torch.testing.assert_close(twin(x), module(x), atol=1e-4, rtol=0)
    names = {n for n, _ in twin.named_modules()}
    weighted = {n for n, m in module.named_modules() if n and any(True for _ in m.parameters(recurse=False))}
    assert weighted <= names  # every layer of the code under its own path (layer1.0.conv1, layer1.1.down.1…)
    # the same keys as the code's state_dict (the dynamo route adds zero biases to bias-free convolutions)
    assert {n for n, _ in module.named_parameters()} <= {n for n, _ in twin.named_parameters()}


def test_write_back_round_trips_reinitialised_batchnorm() -> None:
    module = make_model("resnet")
    fresh = type(module)().eval()  # default BN stats: the legacy exporter de-duplicates them
    model = torchscript_to_onnx(torch.jit.script(fresh), torch.randn(2, *SHAPE))
    assert count(model, "Identity") > 0
    twin = build_torch_twin(model)
    torch.manual_seed(1)
    for m in twin.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    x = torch.randn(4, *SHAPE)
    written = write_back(twin, model)
    onnx.checker.check_model(written)
    with torch.no_grad():
        np.testing.assert_allclose(ort_logits(written, x), twin(x).numpy(), atol=1e-4, rtol=0)
        assert not np.allclose(ort_logits(model, x), twin(x).numpy(), atol=1e-3)


def test_unsupported_operators_are_named() -> None:
    nodes = [
        helper.make_node("NonMaxSuppression", ["boxes", "scores"], ["sel"]),
        helper.make_node("FancyOp", ["boxes"], ["y"], domain="com.example"),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 4, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, 4])],
        [helper.make_tensor_value_info("sel", TensorProto.INT64, [None, 3]),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("com.example", 1)])
    with pytest.raises(UnsupportedOperatorError) as info:
        build_torch_twin(model)
    message = str(info.value)
    assert "NonMaxSuppression (domain 'ai.onnx', opset 20)" in message
    assert "FancyOp (domain 'com.example', opset 1)" in message
    assert "--method occlusion" in message and "re-export the model" in message


def test_naming_rules() -> None:
    legacy = helper.make_node("Conv", ["x", "w"], ["y"], name="/layer1/layer1.0/conv1/Conv")
    assert module_path(legacy) == "layer1.0.conv1"
    assert module_path(helper.make_node("Conv", ["x", "w"], ["y"], name="/layer1/layer1.1/down/down.0/Conv")) == "layer1.1.down.0"
    dynamo = helper.make_node("Relu", ["y"], ["z"], name="node_relu")
    helper.set_metadata_props(dynamo, {"pkg.torch.onnx.name_scopes": "['', 'layer1', 'layer1.0.relu', 'relu']"})
    assert module_path(dynamo) == "layer1.0.relu"
    assert module_path(helper.make_node("Add", ["a", "b"], ["c"], name="Add_3")) is None
    assert sanitize("layer1.0.conv1") == "layer1_0_conv1"  # one segment: an unrecorded node name
    assert sanitize("0.weird-name") == "0_weird_name"
    assert sanitize("forward") == "forward_"
    assert dotted("features.0.forward") == "features.0.forward_"
    add = helper.make_node("Add", ["a", "b"], ["c"], name="/layer1/layer1.0/Add")
    relu2 = helper.make_node("Relu", ["c"], ["d"], name="/layer1/layer1.0/relu/Relu_1")
    names, direct = assign_names([legacy, add, relu2, dynamo, helper.make_node("Add", ["d", "d"], ["e"], name="")], [None] * 5,
                         [True, False, False, False, False])
    assert names == ["layer1.0.conv1", "layer1.0.add", "layer1.0.relu", "layer1.0.relu_1", "add"]
    assert direct == {"layer1.0.conv1", "layer1.0.relu", "layer1.0.relu_1"}  # modules of the code, not ops
    # a scripted module's legacy export drops the innermost scope; the parameter's name keeps it
    scripted_bn = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="/block2/0/BatchNormalization")
    assert assign_names([scripted_bn], [parameter_owner("block2.0.norm.weight")], [True])[0] == ["block2.0.norm"]
    # the dynamo optimizer's Conv+BatchNorm keeps the conv's weight names and the BatchNorm's path
    fused = helper.make_node("Conv", ["x", "w"], ["y"], name="node_Conv_97")
    helper.set_metadata_props(fused, {"pkg.torch.onnx.name_scopes": "['', 'layer1', 'layer1.0', 'layer1.0.bn1', 'bn']"})
    assert assign_names([fused], [parameter_owner("layer1.0.conv1.weight")], [True])[0] == ["layer1.0.bn1"]
    assert parameter_owner("onnx::Conv_63") is None and parameter_owner("val_7") is None
