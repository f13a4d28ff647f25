"""The loader: every format behind one interface, and one-line errors for bad model files."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from audit.errors import AuditError
from audit.models.loader import ModelOptions, load_classifier


class SmallNet(nn.Module):
    def __init__(self, channels: int = 1, classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def net() -> nn.Module:
    torch.manual_seed(0)
    model = SmallNet().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture(scope="module")
def files(net: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    x = torch.rand(2, 1, 20, 24)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(net).save(str(root / "net.pt"))
        torch.onnx.export(net, (x,), str(root / "net.onnx"), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "n"}})
        torch.onnx.export(net, (x[:1],), str(root / "fixed.onnx"), dynamo=False, input_names=["x"])
        program = torch.export.export(net, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
        torch.export.save(program, str(root / "net.pt2"))
    torch.save(net.state_dict(), root / "weights.pt")
    (root / "notes.onnx").write_text("this is not a model\n")
    return {p.name: p for p in root.iterdir()}


@pytest.mark.parametrize(
    "name, options, fmt",
    [
        ("net.pt", ModelOptions(input_size=(20, 24), channels=1), "torchscript"),
        ("net.pt2", ModelOptions(), "torch.export"),
        ("net.onnx", ModelOptions(), "onnx"),
        ("fixed.onnx", ModelOptions(), "onnx"),
    ],
)
def test_every_format_matches_the_torch_module(files, net, name, options, fmt) -> None:
    classifier = load_classifier(files[name], options)
    assert classifier.format == fmt
    assert classifier.spec.shape == (1, 20, 24)
    assert classifier.num_classes == 3
    assert len(classifier.sha256) == 64
    x = torch.rand(5, 1, 20, 24)
    np.testing.assert_allclose(classifier.logits(x).numpy(), net(x).detach().numpy(), atol=1e-5)
    probabilities = classifier.probabilities(classifier.logits(x))
    np.testing.assert_allclose(probabilities.sum(dim=1).numpy(), 1.0, atol=1e-6)


def test_multilabel_uses_a_sigmoid_per_output(files, net) -> None:
    classifier = load_classifier(files["net.onnx"], ModelOptions(multilabel=True, class_names=("a", "b", "c")))
    x = torch.rand(4, 1, 20, 24)
    np.testing.assert_allclose(classifier.probabilities(classifier.logits(x)).numpy(), torch.sigmoid(net(x)).detach().numpy(), atol=1e-5)
    assert classifier.class_names == ["a", "b", "c"]


@pytest.mark.parametrize(
    "name, options, words",
    [
        ("missing.onnx", ModelOptions(), ["missing.onnx", "not found"]),
        ("weights.pt", ModelOptions(), ["weights.pt", "pickle", "torch.jit.script"]),
        ("notes.onnx", ModelOptions(), ["notes.onnx", "not a model file"]),
        ("net.pt", ModelOptions(), ["net.pt", "--input-size", "--channels"]),
        ("net.onnx", ModelOptions(channels=3), ["--channels 3", "declares 1"]),
        ("net.onnx", ModelOptions(input_size=(28, 28)), ["--input-size", "20x24"]),
        ("net.onnx", ModelOptions(class_names=("a", "b")), ["--class-names", "3 outputs"]),
        ("net.pt", ModelOptions(input_size=(20, 24), channels=3), ["net.pt", "forward pass failed"]),
    ],
)
def test_bad_model_input_is_one_line_naming_the_file_and_fix(files, tmp_path, name, options, words) -> None:
    path = files.get(name, tmp_path / name)
    with pytest.raises(AuditError) as caught:
        load_classifier(path, options)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_a_folder_is_not_a_model(tmp_path) -> None:
    with pytest.raises(AuditError, match="is not a file"):
        load_classifier(tmp_path)


def test_onnx_with_two_inputs_is_refused(tmp_path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])],
        "two",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 1, 4, 4]) for n in ("a", "b")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])],
    )
    path = tmp_path / "two.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    with pytest.raises(AuditError, match="2 inputs"):
        load_classifier(path)


@pytest.mark.parametrize("method", ["gradient", "grad-cam", "integrated-gradients"])
def test_models_traced_for_batch_one_run_image_by_image(tmp_path, method) -> None:
    from audit.models.classifier import from_module
    from audit.pipeline import attribute
    from audit.saliency import methods
    from tests.conftest import TinyCNN

    torch.manual_seed(1)
    module = TinyCNN().eval()
    one = torch.rand(1, 1, 28, 28)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (one,), str(tmp_path / "one.onnx"), dynamo=False)
        torch.export.save(torch.export.export(module, (one,)), str(tmp_path / "one.pt2"))
    x, target = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 1, 0])
    for name in ("one.onnx", "one.pt2"):
        classifier = load_classifier(tmp_path / name)
        assert classifier.batch_limit == 1
        np.testing.assert_allclose(classifier.logits(x).numpy(), module(x).detach().numpy(), atol=1e-5)
        expected = methods.get(method)().attribute(from_module(module, classifier.spec, ["a", "b"]), x, target)
        np.testing.assert_allclose(attribute(methods.get(method)(), classifier, x, target), expected, atol=1e-6)
