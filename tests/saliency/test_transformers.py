"""Vision transformers: token-grid Grad-CAM, attention rollout, gradient-weighted attention and
the randomisation of attention layers, on tiny ViTs (``vit_models``: ``nn.MultiheadAttention``,
hand-written attention, ``F.scaled_dot_product_attention``), in memory and as ONNX twins. References: a re-implementation of
the ViT forward pass with explicit attention (checked against the module's logits and, for
``nn.MultiheadAttention``, against its ``need_weights=True`` weights), numpy for rollout and
Chefer et al.'s rule, captum's LayerGradCam on the token activation reshaped to the grid."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam
from torch import nn

from audit.cli.main import main
from audit.errors import AuditError
from audit.stages.randomisation import execution_order, randomisation_check, reinitialise
from audit.models.classifier import from_module
from audit.models.loader import load_classifier
from audit.models.spec import InputSpec
from audit.saliency import methods
from audit.saliency.attention import by_head
from audit.saliency.layers import feature_layer
from audit.saliency.tokens import CHANNELS, CHANNELS_LAST, TOKENS, grid_of, token_grid
from tests.conftest import assert_one_line_error
from tests.saliency.vit_models import CLASSES, HEADS, SIZE, tiny_vit

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
GRID = SIZE // 8
ATTENTION_METHODS = ("attention-rollout", "gradient-weighted-attention")


def classifier(module: nn.Module, channels: int = 3, classes: int = CLASSES):
    return from_module(module, InputSpec(channels, SIZE, SIZE), [f"c{k}" for k in range(classes)])


def reference(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The ViT's logits and per-layer attention probabilities (N, heads, T, T), computed from its
    weights with explicit attention (no tap), the probabilities in the graph of the logits."""
    tokens = model.patch_embed(x).flatten(2).transpose(1, 2)
    tokens = torch.cat([model.cls_token.expand(len(x), -1, -1), tokens], 1) + model.pos_embed
    maps = []
    for block in model.blocks:
        h = block.norm1(tokens)
        n, t, d = h.shape
        if block.hand_written:
            w, b, out = block.attn.qkv.weight, block.attn.qkv.bias, block.attn.proj
        else:
            w, b, out = block.attn.in_proj_weight, block.attn.in_proj_bias, block.attn.out_proj
        q, k, v = (F.linear(h, wi, bi).reshape(n, t, HEADS, -1).transpose(1, 2)
                   for wi, bi in zip(w.chunk(3), b.chunk(3)))
        a = (q @ k.transpose(-2, -1) / (d // HEADS) ** 0.5).softmax(-1)
        maps.append(a)
        tokens = tokens + F.linear((a @ v).transpose(1, 2).reshape(n, t, d), out.weight, out.bias)
        tokens = tokens + block.mlp(block.norm2(tokens))
    return model.head(model.norm(tokens)[:, 0]), maps


def upsampled(grid: np.ndarray) -> np.ndarray:
    """(N, h, w) → (N, SIZE, SIZE) by torch's bilinear interpolation (align_corners=False)."""
    return F.interpolate(torch.from_numpy(grid)[:, None], size=(SIZE, SIZE), mode="bilinear",
                         align_corners=False)[:, 0].numpy()


@pytest.fixture(params=[(False, False), (True, False), (True, True)], ids=["multihead", "hand-written", "sdpa"])
def vit(request):
    hand_written, fused = request.param
    return tiny_vit(hand_written, fused=fused)


@pytest.fixture
def batch():
    torch.manual_seed(1)
    return torch.randn(3, 3, SIZE, SIZE), torch.tensor([0, 2, 1])


def test_the_reference_forward_is_the_model(vit, batch):
    x, _ = batch
    with torch.no_grad():
        logits, maps = reference(vit, x)
        np.testing.assert_allclose(logits.numpy(), vit(x).numpy(), atol=1e-5)
        if not vit.blocks[0].hand_written:
            h = vit.blocks[0].norm1(torch.cat([vit.cls_token.expand(3, -1, -1),
                                               vit.patch_embed(x).flatten(2).transpose(1, 2)], 1) + vit.pos_embed)
            _, weights = vit.blocks[0].attn(h, h, h, need_weights=True, average_attn_weights=False)
            np.testing.assert_allclose(maps[0].numpy(), weights.numpy(), atol=1e-6)


def numpy_rollout(maps: list[np.ndarray]) -> np.ndarray:
    """Abnar & Zuidema's rollout, the class token's row over the patches, as (N, h, w)."""
    result = None
    for a in maps:
        mixed = 0.5 * a.mean(1) + 0.5 * np.eye(a.shape[-1])
        mixed /= mixed.sum(-1, keepdims=True)
        result = mixed if result is None else np.einsum("nij,njk->nik", mixed, result)
    return result[:, 0, 1:].reshape(-1, GRID, GRID)


def test_rollout_equals_a_numpy_rollout_of_the_attention_weights(vit, batch):
    x, target = batch
    with torch.no_grad():
        _, maps = reference(vit, x)
    expected = upsampled(numpy_rollout([a.double().numpy() for a in maps]))
    method = methods.get("attention-rollout")()
    model = classifier(vit)
    method.prepare(model)
    np.testing.assert_allclose(method.attribute(model, x, target), expected, rtol=1e-5, atol=1e-7)
    assert method.provenance() == {"attention": {"layers": 2, "heads": [HEADS, HEADS], "tokens": 1 + GRID * GRID,
                                                 "extra_tokens": 1, "grid": [GRID, GRID]}}


def test_gradient_weighted_attention_follows_chefer_et_al(vit, batch):
    x, target = batch
    logits, maps = reference(vit, x)
    gradients = torch.autograd.grad(logits[torch.arange(3), target].sum(), maps)
    relevance = np.broadcast_to(np.eye(maps[0].shape[-1]), (3,) + maps[0].shape[-2:])
    for a, g in zip(maps, gradients):
        weighted = np.maximum(g.double().numpy() * a.detach().double().numpy(), 0).mean(1)
        relevance = relevance + np.einsum("nij,njk->nik", weighted, relevance)
    expected = upsampled(relevance[:, 0, 1:].reshape(-1, GRID, GRID))
    got = methods.get("gradient-weighted-attention")().attribute(classifier(vit), x, target)
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)


def test_token_grad_cam_is_captum_on_the_tokens_reshaped_to_the_grid(vit, batch):
    x, target = batch
    model = classifier(vit)
    chosen = feature_layer(model, None, "grad-cam")
    assert (chosen.name, chosen.shape, chosen.default) == ("blocks.1.norm1", (16, GRID, GRID), True)
    assert chosen.to_json() == {"name": "blocks.1.norm1", "shape": [16, GRID, GRID], "default": True, "eager_output": "blocks.1.norm1",
                                "absorbed_batchnorm": False, "layout": "tokens", "extra_tokens": 1}
    got = methods.get("grad-cam")().attribute(model, x, target)

    grid = nn.Identity()  # the reference: captum on a module that outputs the patch tokens as (N, D, h, w)

    def as_grid(_, __, out):
        patches = grid(out[:, 1:].transpose(1, 2).reshape(len(out), -1, GRID, GRID))
        return torch.cat([out[:, :1], patches.flatten(2).transpose(1, 2)], 1)

    hook = vit.blocks[1].norm1.register_forward_hook(as_grid)
    try:
        cam = LayerGradCam(vit, grid).attribute(x.clone().requires_grad_(), target=target, relu_attributions=True)
    finally:
        hook.remove()
    expected = upsampled(cam.detach()[:, 0].double().numpy())
    assert (expected > 0).any()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_grad_cam_after_the_last_attention_would_be_zero(batch):
    """Why the default is the last block's normalised input: the head reads the class token only,
    so the patch tokens of the last block's output get no gradient."""
    x, target = batch
    method = methods.get("grad-cam")(layer="blocks.1")
    model = classifier(tiny_vit(False))
    method.prepare(model)
    assert method.chosen.grid.layout == TOKENS
    assert not method.attribute(model, x, target).any()


def test_layouts_and_the_grid_rule():
    assert token_grid(17, (32, 32)) == (1, 4, 4)
    assert token_grid(16, (32, 32)) == (0, 4, 4)
    assert token_grid(18, (32, 32)) == (2, 4, 4)
    assert token_grid(9, (32, 64)) == (1, 2, 4)
    with pytest.raises(AuditError, match="7 tokens are not a patch grid"):
        token_grid(7, (32, 32))
    assert grid_of((1, 8, 4, 4), (32, 32)).layout == CHANNELS
    assert grid_of((1, 4, 8, 96), (32, 64)).layout == CHANNELS_LAST
    activation = torch.arange(2 * 17 * 5, dtype=torch.float32).reshape(2, 17, 5)
    mapped = grid_of((2, 17, 5), (32, 32)).to_map(activation)
    assert mapped.shape == (2, 5, 4, 4) and mapped[1, 3, 2, 1] == activation[1, 1 + 2 * 4 + 1, 3]


def test_attention_maps_by_head_and_what_rollout_refuses():
    flat = torch.rand(2 * 3, 5, 5)  # (N·heads, T, T), batch-major
    assert torch.equal(by_head([flat], 2, "m", "attention-rollout")[0][1, 2], flat[5])
    with pytest.raises(AuditError, match="windowed attention"):
        by_head([torch.rand(4, 3, 5, 5)], 2, "m", "attention-rollout")  # (N·windows, heads, T, T)
    with pytest.raises(AuditError, match=r"different token counts \[5, 9\]"):
        by_head([torch.rand(2, 3, 5, 5), torch.rand(2, 3, 9, 9)], 2, "m", "attention-rollout")
    with pytest.raises(AuditError, match="attention-rollout: model m computes no attention"):
        by_head([], 2, "m", "attention-rollout")


def test_grad_cam_on_a_swin_style_channels_last_stage(batch):
    """(N, h, w, C) output: Grad-CAM as on the permuted (N, C, h, w) map."""

    class Stage(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Conv2d(3, 6, 8, 8)
            self.stage = nn.Linear(6, 6)
            self.head = nn.Linear(6, CLASSES)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.tanh(self.stage(self.embed(x).permute(0, 2, 3, 1))).mean((1, 2)))

    x, target = batch
    torch.manual_seed(0)
    module = Stage().eval()
    got = methods.get("grad-cam")(layer="stage").attribute(classifier(module), x, target)
    activation = module.stage(module.embed(x).permute(0, 2, 3, 1))
    score = module.head(torch.tanh(activation).mean((1, 2)))[torch.arange(3), target].sum()
    gradient, = torch.autograd.grad(score, activation)
    cam = torch.relu((gradient.mean((1, 2), keepdim=True) * activation).sum(-1)).detach().double().numpy()
    assert cam.any()
    np.testing.assert_allclose(got, upsampled(cam), rtol=1e-5, atol=1e-7)


def export(module: nn.Module, path: Path, dynamo: bool) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(module, (torch.rand(2, 1, SIZE, SIZE),), str(path), dynamo=True, input_names=["x"],
                              dynamic_shapes={"x": {0: torch.export.Dim("n")}}, verbose=False)
        else:
            torch.onnx.export(module, (torch.rand(2, 1, SIZE, SIZE),), str(path), dynamo=False, input_names=["x"],
                              dynamic_axes={"x": {0: "n"}}, opset_version=17)
    return path


EXPORTS = {"hand-written, legacy": (True, False), "hand-written, dynamo": (True, True),
           "multihead, dynamo": (False, True)}


@pytest.mark.parametrize("hand_written, dynamo", EXPORTS.values(), ids=EXPORTS.keys())
def test_the_onnx_twin_gives_the_maps_of_the_module(hand_written, dynamo, tmp_path):
    """The twin's Softmax nodes are the taps; its token layer is found like the module's."""
    module = tiny_vit(hand_written, channels=1, classes=2)
    twin = load_classifier(export(module, tmp_path / "vit.onnx", dynamo))
    eager = classifier(module, channels=1, classes=2)
    torch.manual_seed(2)
    x, target = torch.randn(2, 1, SIZE, SIZE), torch.tensor([1, 0])
    for name in ("grad-cam",) + ATTENTION_METHODS:
        maps = []
        for model in (eager, twin):
            method = methods.get(name)()
            method.prepare(model)
            maps.append(method.attribute(model, x, target))
        assert maps[0].any()
        np.testing.assert_allclose(maps[1], maps[0], rtol=1e-4, atol=1e-6, err_msg=name)


def test_an_unflattened_torch_export_program_gives_the_maps_of_the_module(vit, batch):
    """``torch.export.unflatten`` (how .pt2 programs keep their module tree): the taps see the
    aten softmax / scaled_dot_product_attention ops its InterpreterModules run."""
    x, target = batch
    program = torch.export.export(vit, (x,), dynamic_shapes={"x": {0: torch.export.Dim("n")}})
    unflattened = torch.export.unflatten(program)
    for name in ("grad-cam",) + ATTENTION_METHODS:
        maps = []
        for module in (vit, unflattened):
            method = methods.get(name)()
            model = classifier(module)
            method.prepare(model)
            maps.append(method.attribute(model, x, target))
        assert maps[0].any()
        np.testing.assert_allclose(maps[1], maps[0], rtol=1e-5, atol=1e-7, err_msg=name)


def test_audit_run_on_a_dynamo_export(synthetic_root, tmp_path, capsys):
    model = export(tiny_vit(True, channels=1, classes=2), tmp_path / "vit.onnx", dynamo=True)
    valid = synthetic_root / "valid"
    out = tmp_path / "out"
    args = ["run", model, "--data", valid / "images", "--masks", valid / "artefacts", "--out", out, "--quiet",
            "--randomization-images", "3", "--method", "grad-cam", "--method", "gradient"]
    code = main([str(a) for a in args + [a for m in ATTENTION_METHODS for a in ("--method", m)]])
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["methods"]["grad-cam"]["layer"]["layout"] == "tokens"
    for name in ATTENTION_METHODS:
        entry = results["methods"][name]
        assert entry["attention"]["grid"] == [GRID, GRID] and entry["attention"]["extra_tokens"] == 1
        assert len(entry["randomization"]["cascading"]) == len(entry["randomization"]["layers"]) > 10
    assert np.load(out / "maps" / "attention-rollout.npz")


def test_a_model_without_attention_is_a_one_line_error(synthetic_root, tiny_model_files, tmp_path, capsys):
    valid = synthetic_root / "valid"
    code = main([str(a) for a in ["run", tiny_model_files["onnx"], "--data", valid / "images", "--out", tmp_path / "o",
                                  "--quiet", "--method", "attention-rollout"]])
    assert_one_line_error(code, capsys.readouterr().err, "attention-rollout", "no attention")


def test_randomisation_covers_attention_and_layer_norm(batch):
    module = tiny_vit(False)
    x, target = batch
    order, unused = execution_order(module, x)
    assert {"blocks.0.attn", "blocks.0.norm1", "blocks.1.norm2", "norm", "patch_embed", "head"} <= set(order)
    assert "blocks.0.attn.out_proj" in unused  # applied by blocks.0.attn, re-initialised with it
    attention = module.blocks[0].attn
    reinitialise(attention, 7)
    torch.manual_seed(7)
    fresh = nn.MultiheadAttention(attention.embed_dim, attention.num_heads, batch_first=True)
    for (name, got), (_, expected) in zip(attention.named_parameters(), fresh.named_parameters()):
        assert torch.equal(got, expected), name
    result = randomisation_check(classifier(tiny_vit(False)), methods.get("attention-rollout")(), x, target,
                                 name="attention-rollout", independent=False)
    assert result["layers"] == order and len(result["cascading"]) == len(order)
