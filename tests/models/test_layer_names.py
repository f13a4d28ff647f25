"""Layer names are the module paths of the user's code, for every export; what an exporter folded
into a layer is said; unknown names get the closest ones; ``audit layers`` lists them."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from audit.cli.main import main
from audit.errors import AuditError
from audit.models.layer_names import find_layer, named_layers
from audit.models.loader import load_classifier
from audit.models.onnx_graph import build_torch_twin
from audit.saliency import methods
from tests.conftest import assert_one_line_error
from tests.models.conftest import SHAPE, make_model


def _outputs(module: nn.Module, names: list[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    layers = dict(module.named_modules()) if not hasattr(module, "fused_into") else named_layers(module)
    seen: dict[str, torch.Tensor] = {}
    handles = [layers[n].register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, o)) for n in names]
    with torch.no_grad():
        module(x)
    for handle in handles:
        handle.remove()
    return seen


def _weighted(module: nn.Module) -> list[str]:
    return [n for n, m in module.named_modules() if n and any(True for _ in m.parameters(recurse=False))]


@pytest.mark.parametrize("opset", [13, 17])
def test_legacy_folding_keeps_the_code_names_and_says_the_conv_outputs_its_batchnorm(exported, opset: int) -> None:
    eager, model = exported("resnet", "legacy", opset)
    twin = build_torch_twin(model)
    convs = [n for n, m in eager.named_modules() if isinstance(m, nn.Conv2d)]
    assert set(convs) <= set(named_layers(twin))  # layer1.1.down.0 too: the downsample branch keeps its name
    assert twin.folded_batchnorm == set(convs)
    x = torch.randn(2, *SHAPE)
    batchnorm_of = {"stem.0": "stem.1", "layer1.0.conv1": "layer1.0.bn1", "layer1.1.down.0": "layer1.1.down.1"}
    got, want = _outputs(twin, list(batchnorm_of), x), _outputs(eager, list(batchnorm_of.values()), x)
    for conv, bn in batchnorm_of.items():  # the folded conv computes the BatchNorm's output, not its own
        torch.testing.assert_close(got[conv], want[bn], atol=1e-5, rtol=1e-5)


def test_dynamo_fusion_is_named_after_the_batchnorm_and_the_conv_name_explains_itself(exported) -> None:
    eager, model = exported("resnet", "dynamo", 18)
    twin = build_torch_twin(model)
    assert twin.fused_into["layer1.0.conv1"] == "layer1.0.bn1"
    with pytest.raises(AuditError, match=r"^grad-cam: m.onnx has no layer 'layer1.0.conv1'; the exporter fused it into "
                                         r"the BatchNorm 'layer1.0.bn1'"):
        find_layer(twin, "layer1.0.conv1", "grad-cam", "m.onnx")


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def test_grad_cam_on_a_folded_conv_says_so_in_its_provenance(exported, tmp_path: Path) -> None:
    _, model = exported("resnet", "legacy", 17)
    classifier = load_classifier(_save(model, tmp_path / "m.onnx"))
    method = methods.get("grad-cam")(layer="layer1.0.conv2")
    method.prepare(classifier)
    layer = method.provenance()["layer"]
    assert layer["absorbed_batchnorm"] is True
    assert layer["eager_output"] == "the BatchNorm that follows layer1.0.conv2 in the original code"


def test_a_graph_fixed_at_batch_one_has_the_code_names_without_a_prefix(tmp_path: Path) -> None:
    eager = make_model("resnet")
    path = tmp_path / "fixed.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(eager, (torch.randn(1, *SHAPE),), str(path), dynamo=False, do_constant_folding=False)
    classifier = load_classifier(path)
    assert classifier.batch_limit == 1
    assert set(_weighted(eager)) <= set(classifier.layer_names())
    method = methods.get("grad-cam")()
    method.prepare(classifier)
    assert method.provenance()["layer"]["name"] == "layer1.1"  # the last block's output, no "model." prefix


def test_audit_layers_lists_names_and_shapes_and_an_unknown_layer_gets_the_closest(exported, tmp_path, capsys,
                                                                                   synthetic_root) -> None:
    _, model = exported("resnet", "legacy", 17)
    path = _save(model, tmp_path / "m.onnx")
    assert main(["layers", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert rows["layer1.1.down.0"][:2] == ["Conv2d", "1×16×4×4"]
    assert "BatchNorm folded in" in " ".join(rows["layer1.1.down.0"])
    assert "default Grad-CAM layer (the output of layer1.1)" in " ".join(rows["layer1.1.relu_1"])
    sample = Path(__file__).parents[2] / "sample_models" / "biased.onnx"
    code = main(["run", str(sample), "--data", str(synthetic_root / "valid" / "images"), "--out", str(tmp_path / "o"),
                 "-m", "grad-cam", "-o", "grad-cam.layer=layers.0.bn9", "--quiet"])
    assert_one_line_error(code, capsys.readouterr().err, "-o grad-cam.layer", "no layer 'layers.0.bn9'",
                          "; closest: ", "layers.0.bn1", "audit layers MODEL")


@pytest.mark.parametrize(("exporter", "opset"), [("legacy", 17), ("dynamo", 18)])
def test_a_block_of_the_code_is_hooked_at_its_output(exported, exporter: str, opset: int) -> None:
    eager, model = exported("resnet", exporter, opset)
    twin = build_torch_twin(model)
    block = find_layer(twin, "layer1.0", "grad-cam", "m.onnx")  # a Scope of the twin, a Block module in the code
    x = torch.randn(2, *SHAPE)
    seen: list[torch.Tensor] = []
    handle = block.register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        twin(x)
    handle.remove()
    torch.testing.assert_close(seen[-1], _outputs(eager, ["layer1.0"], x)["layer1.0"], atol=1e-5, rtol=1e-5)


class _FunctionalHead(nn.Module):
    """torchvision's DenseNet pattern: F.relu of the features in the top-level forward, then pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6))
        self.classifier = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.relu(self.features(x))
        return self.classifier(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, (1, 1)), 1))


def test_a_pooled_function_of_the_top_level_forward_is_the_default_layer_in_every_format(tmp_path: Path) -> None:
    torch.manual_seed(0)
    eager = _FunctionalHead().eval()
    eager.features[1].running_mean.uniform_(-0.5, 0.5)
    x = torch.randn(2, *SHAPE)
    program = torch.export.export(eager, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(tmp_path / "m.pt2"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(eager, (x,), str(tmp_path / "m.onnx"), dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "batch"}})
    maps = {}
    for suffix in ("pt2", "onnx"):
        classifier = load_classifier(tmp_path / f"m.{suffix}")
        method = methods.get("grad-cam")()
        method.prepare(classifier)
        layer = method.provenance()["layer"]
        assert layer["name"] == "relu", suffix  # the twin's name for the op, and the .pt2's tap
        assert layer["eager_output"].startswith("no module: relu is a function"), suffix
        maps[suffix] = method.attribute(classifier, x, torch.tensor([0, 2]))
    assert maps["pt2"].max() > 0
    np.testing.assert_allclose(maps["pt2"], maps["onnx"], rtol=0, atol=1e-5 * maps["onnx"].max())


class _ScriptedAttention(nn.Module):
    """A scripted nn.MultiheadAttention: the legacy ONNX exporter refuses it (aten::is_autocast_enabled)."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 4, 4)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        return self.head(self.attn(t, t, t, need_weights=False)[0].mean(1))


def test_audit_layers_lists_a_scripted_model_whose_export_fails(tmp_path: Path, capsys) -> None:
    path = tmp_path / "attn.pt"
    torch.jit.script(_ScriptedAttention().eval()).save(str(path))
    assert main(["layers", str(path), "--input-size", "16", "16", "--channels", "3"]) == 0
    out = capsys.readouterr().out
    assert "no layer usable by Grad-CAM" in out and "format torchscript" in out
    names = [line.split()[0] for line in out.splitlines()[3:]]
    assert names == ["patch", "attn", "attn.out_proj", "head"]
