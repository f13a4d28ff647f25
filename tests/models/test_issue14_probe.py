"""What a hostile-user probe of issue 14 broke: models that return several outputs (a dict of
logits and features, a tuple) in every format, and attention rollout on a legacy ONNX export
below opset 13 (Softmax coerced to 2-D)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from captum.attr import LayerGradCam
from PIL import Image
from torch import nn

from audit.cli.main import main
from audit.models.loader import ModelOptions, load_classifier
from audit.saliency import methods
from audit.saliency.grad_cam import upsample
from tests.conftest import assert_one_line_error


class TupleOutput(nn.Module):
    """forward returns (logits, features)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return self.head(features.mean((2, 3))), features


class DictOutput(TupleOutput):
    """forward returns {"logits", "features"}."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.body(x)
        return {"logits": self.head(features.mean((2, 3))), "features": features}


def _save(model: nn.Module, how: str, path: Path) -> Path:
    x = torch.rand(1, 3, 8, 8)
    if how == "script":
        torch.jit.script(model).save(str(path))
    elif how == "trace":
        torch.jit.trace(model, x, strict=False).save(str(path))
    elif how == "export-dynamic":
        batch = torch.export.Dim("batch", min=1, max=64)
        torch.export.save(torch.export.export(model, (torch.rand(2, 3, 8, 8),), dynamic_shapes=({0: batch},)), str(path))
    elif how == "export-batch1":
        torch.export.save(torch.export.export(model, (x,)), str(path))
    else:
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"],
                          dynamic_axes={"x": {0: "n"}})
    return path


def _rgb_folder(root: Path, size: int) -> Path:
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / label / "0.png")
    return root


@pytest.mark.parametrize("as_dict", [True, False])
@pytest.mark.parametrize("how", ["script", "trace", "export-dynamic", "export-batch1", "onnx"])
def test_a_model_with_several_outputs_is_one_line_naming_them(tmp_path, capsys, how: str, as_dict: bool) -> None:
    """Before: exit 3 ('dict' object has no attribute 'float', 'tuple' object has no attribute
    'detach': the forward path took output 0, the differentiated module returned them all)."""
    suffix = {"script": ".pt", "trace": ".pt", "onnx": ".onnx"}.get(how, ".pt2")
    torch.manual_seed(0)
    path = _save((DictOutput() if as_dict else TupleOutput()).eval(), how, tmp_path / f"model{suffix}")
    size = ["--input-size", "8", "8", "--channels", "3"] if suffix == ".pt" else []
    code = main(["run", str(path), "--data", str(_rgb_folder(tmp_path / "data", 8)), "--out", str(tmp_path / "out"),
                 "--method", "gradient", "--quiet", "--randomization-images", "0", *size])
    named_dict = as_dict and how != "onnx"  # TorchScript keeps the dict (strict=False); a .pt2 is probed too
    assert_one_line_error(code, capsys.readouterr().err, str(path), "not one (batch, classes) logits tensor",
                          "keys logits, features" if named_dict else "2 ", "export a wrapper")


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.probabilities: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = ((q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5).softmax(-1)
        self.probabilities = a.detach()
        return self.proj((a @ v).transpose(1, 2).reshape(n, t, d))


class DeiT(nn.Module):
    """Class and distillation tokens, 16 px, 4 × 4 patches of 4 px, two blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 16, 4, 4)
        self.tokens = nn.Parameter(torch.randn(1, 2, 16))
        self.attn = nn.ModuleList([Attention(16, 2), Attention(16, 2)])
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.tokens.expand(x.shape[0], -1, -1), x], 1)
        for attention in self.attn:
            x = x + attention(x)
        return self.head(self.norm(x)[:, 0])


@pytest.mark.parametrize("opset", [11, 17])
def test_attention_rollout_on_a_fresh_onnx_classifier(tmp_path, opset: int) -> None:
    """Two bugs: (1) the twin was built inside the attention tap, so its check pass on three
    images was tapped too (maps (3, heads, T, T): 'leading dim is not the batch 1'); (2) opset
    11's Softmax flattens to 2-D at its axis, which at the last axis is the softmax over it, now
    run as one so the tap sees it (before: 'no global pooling'). `q, k, v = qkv` unpacking as in
    timm. Reference: Abnar & Zuidema's rollout by hand from the eager module's probabilities."""
    torch.manual_seed(0)
    model = DeiT().eval()
    path = tmp_path / "deit.onnx"
    torch.onnx.export(model, (torch.rand(1, 3, 16, 16),), str(path), dynamo=False, opset_version=opset,
                      input_names=["x"], dynamic_axes={"x": {0: "n"}})
    classifier = load_classifier(path)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    method = methods.get("attention-rollout")()
    method.prepare(classifier)
    got = method.attribute(classifier, x, torch.tensor([0, 1]))
    with torch.no_grad():
        model(x)
    rollout = torch.eye(18, dtype=torch.float64).expand(2, 18, 18)
    for attention in model.attn:
        a = 0.5 * attention.probabilities.double().mean(1) + 0.5 * torch.eye(18, dtype=torch.float64)
        rollout = (a / a.sum(-1, keepdim=True)) @ rollout
    expected = upsample(rollout[:, 0, 2:].reshape(2, 1, 4, 4).float(), (16, 16)).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * expected.max())
    assert method.provenance()["attention"]["extra_tokens"] == 2


class Mixer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 8)
        self.norm2 = nn.LayerNorm(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm2(x + self.fc(self.norm1(x)))


class Tokens(nn.Module):
    """Patch tokens through two blocks whose LayerNorms keep their initial weights (equal initializers)."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 4, 4)
        self.blocks = nn.Sequential(Mixer(), Mixer())
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.patch(x).flatten(2).transpose(1, 2)).mean(1))


def test_a_scripted_models_twin_names_every_layer_by_its_module_path(tmp_path) -> None:
    """The legacy export of a scripted model drops the last block's scopes from node names, reads
    equal LayerNorm initializers through Identity nodes named after each parameter, and a
    Linear's weight through a Transpose (no constant folding); the names came out as
    blocks.1.layer_normalization and blocks.1.mat_mul (Grad-CAM's default layer among them)."""
    torch.manual_seed(0)
    model = Tokens().eval()
    path = tmp_path / "tokens.pt"
    torch.jit.script(model).save(str(path))
    classifier = load_classifier(path, ModelOptions(input_size=(16, 16), channels=3))
    eager = {n for n, m in model.named_modules() if n and any(True for _ in m.parameters(recurse=False))}
    assert set(classifier.layer_names()) == eager


class ConvBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(x).mean((2, 3)))


def test_a_batchnorm_the_legacy_exporter_folded_is_named_with_its_convolution_and_the_fix(tmp_path) -> None:
    """Naming a BatchNorm of the code (block.1) on a legacy export, which folded it into block.0,
    listed the closest names only; the message now says which convolutions output the folded
    BatchNorms and that do_constant_folding=False keeps them, and with that export the name
    works: Grad-CAM on block.1 equals captum's LayerGradCam on the eager BatchNorm."""
    from audit.errors import AuditError

    torch.manual_seed(0)
    model = ConvBN().eval()
    model.block[1].running_mean.uniform_(-1, 1)
    model.block[1].running_var.uniform_(0.5, 2)
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    for folding in (True, False):
        path = tmp_path / f"folding{folding}.onnx"
        torch.onnx.export(model, (x[:1],), str(path), dynamo=False, opset_version=17, input_names=["x"],
                          dynamic_axes={"x": {0: "n"}}, do_constant_folding=folding)
        method = methods.get("grad-cam")(layer="block.1")
        classifier = load_classifier(path)
        if folding:
            with pytest.raises(AuditError, match=r"has no layer 'block.1'; closest: .*; the exporter folded BatchNorms "
                                                 r"into block.0, which output the BatchNorms' values: name one of them, "
                                                 r"or export with .*do_constant_folding=False\) to keep them$"):
                method.prepare(classifier)
            continue
        method.prepare(classifier)
        _assert_equals_captum_grad_cam(method.attribute(classifier, x, torch.tensor([0, 1])), model, model.block[1], x)


class Folding(nn.Module):
    """A block that reshapes by a product of sizes (n·c), as window attention does."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return torch.relu(self.conv(x).reshape(n * c, h * w).reshape(n, c, h, w))


class FoldingNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.blocks = nn.Sequential(Folding(), Folding())
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


def test_default_grad_cam_layer_of_a_pt2_whose_block_returns_several_values(tmp_path) -> None:
    """With a dynamic batch, unflatten makes blocks.0 return (its output, n·c) for blocks.1 to
    reuse; the node-by-node run handed the fx nodes themselves on ('conv2d() received an invalid
    combination of arguments - got (Node, ...)'), so the default layer was refused (and a
    Swin-style model's message quoted aten::layer_norm). Reference: captum's LayerGradCam on the
    eager blocks.1."""
    torch.manual_seed(1)
    model = FoldingNet().eval()
    path = tmp_path / "net.pt2"
    batch = torch.export.Dim("batch", min=1, max=64)
    torch.export.save(torch.export.export(model, (torch.rand(2, 3, 8, 8),), dynamic_shapes=({0: batch},)), str(path))
    method = methods.get("grad-cam")()
    classifier = load_classifier(path)
    method.prepare(classifier)
    assert method.provenance()["layer"]["name"] == "blocks.1"
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    _assert_equals_captum_grad_cam(method.attribute(classifier, x, torch.tensor([0, 1])), model, model.blocks[1], x)


def _assert_equals_captum_grad_cam(got: np.ndarray, model: nn.Module, layer: nn.Module, x: torch.Tensor) -> None:
    """``got`` (targets 0, 1) equals captum's LayerGradCam of the eager ``layer``, upsampled, to 1e-5 of its peak."""
    cam = LayerGradCam(model, layer).attribute(x.clone().requires_grad_(True), target=torch.tensor([0, 1]),
                                               relu_attributions=True)
    expected = upsample(cam.detach(), tuple(x.shape[2:])).numpy()
    assert expected.max() > 0
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * expected.max())


class FunctionalEnd(TupleOutput):
    """The pooled map is torch.relu's output (body.1 unused): no module of the code returns it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.body[0](x)).mean((2, 3)))


def test_a_default_layer_that_is_a_function_of_the_code_says_so(tmp_path) -> None:
    """The twin's default layer is then the node named after its operator, 'relu'; eager_output
    said 'relu', a module the code does not have."""
    model = FunctionalEnd().eval()
    assert "relu" not in dict(model.named_modules())
    path = tmp_path / "model.onnx"
    torch.onnx.export(model, (torch.rand(1, 3, 8, 8),), str(path), dynamo=False, opset_version=17, input_names=["x"],
                      dynamic_axes={"x": {0: "n"}})
    method = methods.get("grad-cam")()
    method.prepare(load_classifier(path))
    layer = method.provenance()["layer"]
    assert layer["name"] == "relu"
    assert layer["eager_output"] == "no module: relu is a function the original code calls (named after its operator)"
