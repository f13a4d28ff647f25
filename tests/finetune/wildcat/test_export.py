"""The WILDCAT model written in each format: two outputs, equal to the trained module, no old head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from audit.errors import AuditError
from audit.finetune.wildcat.export import INPUT, OUTPUTS, TOLERANCE, frozen, run_written, write_wildcat
from audit.finetune.wildcat.network import build_wildcat
from audit.models.loader import ModelOptions, load_classifier
from tests.conftest import TinyCNN
from tests.finetune.zoo import export

K_MAX, K_MIN, ALPHA = 3, 2, 0.7


def _pooled(maps: np.ndarray) -> np.ndarray:
    """The spatial pooling recomputed with numpy from the file's class maps."""
    flat = np.sort(maps.reshape(*maps.shape[:2], -1), axis=2)
    return flat[..., -K_MAX:].mean(2) + ALPHA * flat[..., :K_MIN].mean(2)


@pytest.mark.parametrize("how", ["onnx-folded", "onnx-dynamo", "torchscript", "torch.export"])
def test_round_trip(how: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    suffix = {"onnx-folded": ".onnx", "onnx-dynamo": ".onnx", "torchscript": ".pt", "torch.export": ".pt2"}[how]
    path = export(TinyCNN(), tmp_path / f"tiny{suffix}", how)
    classifier = load_classifier(path, ModelOptions(input_size=(28, 28), channels=1))
    net = build_wildcat(classifier, maps=3, k_max=K_MAX, k_min=K_MIN, alpha=ALPHA)
    with torch.no_grad():
        net.head.transfer.weight.normal_()  # not the initial weights: a trained-looking head
    written = write_wildcat(classifier, net, tmp_path / f"wildcat{suffix}")
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    logits, maps = run_written(written, classifier.format, x)
    with torch.no_grad():
        expected_logits, expected_maps = frozen(net)(x)
    assert logits.shape == (5, 2) and maps.shape == (5, 2, 28, 28)
    assert torch.allclose(maps, expected_maps, atol=TOLERANCE) and torch.allclose(logits, expected_logits, atol=TOLERANCE)
    assert np.allclose(logits.numpy(), _pooled(maps.numpy()), atol=1e-5)
    if classifier.format == "onnx":
        graph = onnx.load(str(written)).graph
        assert [i.name for i in graph.input] == [INPUT] and [o.name for o in graph.output] == list(OUTPUTS)
        assert not {n.op_type for n in graph.node} & {"Gemm", "MatMul", "GlobalAveragePool"}  # the old head is gone
        assert "head.weight" not in {i.name for i in graph.initializer}
    elif classifier.format == "torch.export":
        program = torch.export.load(str(written))
        assert not any("linear" in str(n.target) or "addmm" in str(n.target) for n in program.graph.nodes)
    else:
        kinds = {n.kind() for n in torch.jit.load(str(written)).inlined_graph.nodes()}
        assert not kinds & {"aten::linear", "aten::addmm", "aten::matmul"}


def test_a_model_that_cannot_be_written_is_a_one_line_error(tiny_model_files: dict, tmp_path: Path) -> None:
    classifier = load_classifier(tiny_model_files["onnx"], ModelOptions(input_size=(28, 28), channels=1))
    net = build_wildcat(classifier)
    with pytest.raises(AuditError) as caught:
        write_wildcat(classifier, net, tmp_path / "missing" / "folder" / "wildcat.onnx")
    assert "\n" not in str(caught.value)
