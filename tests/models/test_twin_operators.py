"""Operators the exporters emit for common architectures (issue 14), constant folding before
rejecting, and pattern fusion: each against onnxruntime on a hand-built graph, or against the
eager module the graph was exported from (outputs and input gradients)."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from audit.models.onnx_graph import UnsupportedOperatorError, build_torch_twin
from audit.models.onnx_graph.graph import check_supported
from audit.models.to_onnx import torchscript_to_onnx
from tests.models.native_zoo import build


def ort_run(model: onnx.ModelProto, *inputs: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {i.name: a for i, a in zip(session.get_inputs(), inputs)})


def make_model(nodes: list, inputs: list, outputs: list, initializers: tuple = (), opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return model


def const(name: str, value: object, dtype: type = np.int64) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(value, dtype=dtype)))


def legacy_export(module: nn.Module, x: torch.Tensor, opset: int, fold: bool = True) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), buffer, dynamo=False, opset_version=opset, do_constant_folding=fold,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
    return onnx.load_from_string(buffer.getvalue())


def dynamo_export(module: nn.Module, x: torch.Tensor) -> onnx.ModelProto:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (x,), dynamo=True, verbose=False,
                                    dynamic_shapes=({0: torch.export.Dim("b")},))
    return program.model_proto


def assert_matches_eager(module: nn.Module, model: onnx.ModelProto, x: torch.Tensor) -> nn.Module:
    """Twin logits and input gradients equal the eager module's (relative 1e-5 of their scale)."""
    twin = build_torch_twin(model)
    xe, xt = x.clone().requires_grad_(), x.clone().requires_grad_()
    expected, got = module(xe), twin(xt)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5 * float(expected.detach().abs().max()))
    (ge,) = torch.autograd.grad(expected[:, 0].sum(), xe)
    (gt,) = torch.autograd.grad(got[:, 0].sum(), xt)
    torch.testing.assert_close(gt, ge, rtol=0, atol=1e-5 * float(ge.abs().max()))
    return twin


# --- Sequence operators, Loop, If against onnxruntime ----------------------------------------


def _sequence_model() -> onnx.ModelProto:
    f64 = TensorProto.DOUBLE
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Neg", ["x"], ["n"]),
        helper.make_node("Exp", ["x"], ["e"]),
        helper.make_node("SequenceConstruct", ["x", "r", "n"], ["s0"]),
        const("one", 1),
        const("minus_one", -1),
        helper.make_node("SequenceInsert", ["s0", "e", "one"], ["s1"]),  # x, e, r, n
        helper.make_node("SequenceErase", ["s1", "minus_one"], ["s2"]),  # x, e, r
        helper.make_node("SequenceInsert", ["s2", "n"], ["s3"]),  # x, e, r, n
        helper.make_node("ConcatFromSequence", ["s3"], ["cat"], axis=1),
        helper.make_node("ConcatFromSequence", ["s3"], ["stack"], axis=1, new_axis=1),
        helper.make_node("SequenceAt", ["s3", "minus_one"], ["last"]),
        helper.make_node("SequenceLength", ["s3"], ["length"]),
        const("two", 2),
        helper.make_node("SplitToSequence", ["cat", "two"], ["chunks"], axis=1),
        helper.make_node("ConcatFromSequence", ["chunks"], ["rechunked"], axis=0, new_axis=1),
        helper.make_node("SequenceEmpty", [], ["empty"], dtype=f64),
        helper.make_node("SequenceInsert", ["empty", "r"], ["single"]),
        helper.make_node("SplitToSequence", ["r"], ["rows"], axis=0, keepdims=0),
        helper.make_node("SequenceAt", ["rows", "one"], ["row"]),
        helper.make_node("SequenceAt", ["single", "minus_one"], ["only"]),
    ]
    outputs = [helper.make_tensor_value_info(n, TensorProto.INT64 if n == "length" else f64, None)
               for n in ("cat", "stack", "last", "length", "rechunked", "row", "only")]
    return make_model(nodes, [helper.make_tensor_value_info("x", f64, [2, 3])], outputs)


def test_sequence_operators_match_onnxruntime_and_differentiate() -> None:
    model = _sequence_model()
    x = torch.randn(2, 3, dtype=torch.float64)
    twin = build_torch_twin(model)
    got = twin(x)
    for actual, want in zip(got, ort_run(model, x.numpy())):
        np.testing.assert_allclose(actual.detach().numpy(), want, rtol=1e-12, atol=0)
    assert torch.autograd.gradcheck(lambda t: twin(t)[0], (x.clone().requires_grad_(),))
    assert torch.autograd.gradcheck(lambda t: twin(t)[4], (x.clone().requires_grad_(),))


def _loop_model() -> onnx.ModelProto:
    """y ← y * tanh(x) + i for i < 3 (cond stops it once sum(y) > 40), scan of each y."""
    f64 = TensorProto.DOUBLE
    body = helper.make_graph(
        [
            helper.make_node("Cast", ["i"], ["i_f"], to=f64),
            helper.make_node("Mul", ["y_in", "t"], ["scaled"]),  # t: outer-scope runtime value
            helper.make_node("Add", ["scaled", "i_f"], ["y_out"]),
            helper.make_node("ReduceSum", ["y_out"], ["total"], keepdims=0),
            helper.make_node("Less", ["total", "limit"], ["cond_out"]),  # limit: outer constant
            helper.make_node("Identity", ["y_out"], ["scan"]),
        ],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("y_in", f64, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("y_out", f64, None),
         helper.make_tensor_value_info("scan", f64, None)],
    )
    nodes = [
        helper.make_node("Tanh", ["x"], ["t"]),
        const("trips", 3),
        const("limit", 40.0, np.float64),
        const("true", True, np.bool_),
        helper.make_node("Loop", ["trips", "true", "x"], ["y", "ys"], body=body),
    ]
    return make_model(nodes, [helper.make_tensor_value_info("x", f64, [2, 3])],
                      [helper.make_tensor_value_info("y", f64, None), helper.make_tensor_value_info("ys", f64, None)])


@pytest.mark.parametrize("scale", [0.5, 10.0])  # 10: the condition ends the loop early
def test_loop_matches_onnxruntime_and_differentiates(scale: float) -> None:
    model = _loop_model()
    x = torch.rand(2, 3, dtype=torch.float64) * scale
    twin = build_torch_twin(model)
    got = twin(x)
    want = ort_run(model, x.numpy())
    assert got[1].shape == want[1].shape
    for actual, expected in zip(got, want):
        np.testing.assert_allclose(actual.detach().numpy(), expected, rtol=1e-12, atol=0)
    assert torch.autograd.gradcheck(lambda t: twin(t), (x.clone().requires_grad_(),))


def test_if_runs_the_branch_onnxruntime_runs() -> None:
    f64 = TensorProto.DOUBLE

    def branch(op: str) -> onnx.GraphProto:
        return helper.make_graph([helper.make_node(op, ["x", "w"], ["out"])], op,
                                 [], [helper.make_tensor_value_info("out", f64, None)])

    nodes = [helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0), const("zero", 0.0, np.float64),
             helper.make_node("Greater", ["total", "zero"], ["positive"]),
             helper.make_node("If", ["positive"], ["y"], then_branch=branch("Mul"), else_branch=branch("Sub"))]
    w = numpy_helper.from_array(np.array([1.5, -2.0, 3.0]), "w")
    model = make_model(nodes, [helper.make_tensor_value_info("x", f64, [2, 3])],
                       [helper.make_tensor_value_info("y", f64, None)], [w])
    twin = build_torch_twin(model)
    for sign in (1, -1):
        x = torch.rand(2, 3, dtype=torch.float64) * sign
        np.testing.assert_allclose(twin(x).numpy(), ort_run(model, x.numpy())[0], rtol=1e-12, atol=0)
        assert torch.autograd.gradcheck(twin, (x.clone().requires_grad_(),))


# --- Constant folding before rejecting -------------------------------------------------------


def _hardmax_model(on_weights: bool) -> onnx.ModelProto:
    """MatMul by Hardmax(w): Hardmax has no converter; on the weights it folds, on x it cannot."""
    source = "w" if on_weights else "x"
    nodes = [helper.make_node("Hardmax", [source], ["c"], name="hard"),
             helper.make_node("MatMul", ["x", "c"] if on_weights else ["c", "w"], ["y"], name="mm")]
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((3, 3)).astype(np.float32), "w")
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])


def test_operators_without_converter_fold_on_constants() -> None:
    model = _hardmax_model(on_weights=True)
    check_supported(model)
    twin = build_torch_twin(model)
    x = torch.randn(4, 3)
    np.testing.assert_allclose(twin(x).detach().numpy(), ort_run(model, x.numpy())[0], rtol=1e-6, atol=1e-6)
    weight = dict(twin.named_parameters())
    assert len(weight) == 1  # the folded weight is the MatMul's trainable weight, read from Hardmax's output
    source = next(iter(twin.onnx_sources.values()))
    assert source.value == "c" and source.initializer is None


def test_runtime_operator_without_converter_is_named_with_node_and_opset() -> None:
    with pytest.raises(UnsupportedOperatorError) as info:
        build_torch_twin(_hardmax_model(on_weights=False))
    assert "Hardmax (domain 'ai.onnx', opset 17) node 'hard'" in str(info.value)
    assert "MatMul" not in str(info.value)


# --- What the exporters emit for real architectures ------------------------------------------


class AdaptiveVGG(nn.Module):
    """Adaptive pooling to 3×3 from 10×10: the dynamo exporter emits GatherND."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d((3, 3))
        self.fc = nn.Linear(36, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


class StdConv(nn.Conv2d):
    """BiT's weight-standardised convolution (exports BatchNormalization training_mode=1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None, training=True,
                         momentum=0.0, eps=1e-5).reshape_as(self.weight)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


class GroupNormNet(nn.Module):
    """Standardised convolution and GroupNorm (scripted: GroupNorm's batch-size check is a Loop)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = StdConv(3, 8, 3, padding=1)
        self.gn = nn.GroupNorm(2, 8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.gn(self.conv(x))).mean((2, 3)))


class DenseNet(nn.Module):
    """DenseNet-style concatenation of a growing list (scripted: Sequence operators)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.layers = nn.ModuleList([nn.Conv2d(4, 2, 3, padding=1), nn.Conv2d(6, 2, 3, padding=1)])
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [self.stem(x)]
        for layer in self.layers:
            features.append(torch.relu(layer(torch.cat(features, 1))))
        return self.fc(torch.cat(features, 1).mean((2, 3)))


def _seeded(cls: type[nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return cls().eval()


def _ops(model: onnx.ModelProto) -> set[str]:
    return {n.op_type for n in model.graph.node}


def test_legacy_multihead_attention_with_mod() -> None:
    module, x = build("vit"), torch.randn(2, 3, 16, 16)  # a one-block ViT with nn.MultiheadAttention
    model = legacy_export(module, x, 17)
    assert "Mod" in _ops(model)
    assert_matches_eager(module, model, x)


def test_dynamo_adaptive_pooling_with_gathernd() -> None:
    module, x = _seeded(AdaptiveVGG), torch.randn(2, 3, 10, 10)
    model = dynamo_export(module, x)
    assert "GatherND" in _ops(model)
    assert_matches_eager(module, model, x)


@pytest.mark.parametrize("opset", [13, 17])
def test_weight_standardisation_folds(opset: int) -> None:
    module, x = _seeded(GroupNormNet), torch.randn(2, 3, 8, 8)
    model = legacy_export(module, x, opset)
    assert "BatchNormalization" in _ops(model)
    twin = assert_matches_eager(module, model, x)
    conv = next(m for m in twin.modules() if isinstance(m, nn.Conv2d))
    standardised = conv.weight.detach().reshape(8, -1)  # the folded, standardised weight
    torch.testing.assert_close(standardised.mean(1), torch.zeros(8), atol=1e-6, rtol=0)


def test_scripted_groupnorm_loop_and_densenet_sequences() -> None:
    x = torch.randn(2, 3, 8, 8)
    for cls, op in ((GroupNormNet, "Loop"), (DenseNet, "ConcatFromSequence")):
        module = _seeded(cls)
        model = torchscript_to_onnx(torch.jit.script(module), x)
        assert op in _ops(model)
        assert_matches_eager(module, model, x)


# --- Pattern fusion: GELU, LayerNorm, Linear -------------------------------------------------


def _gelu_graph(form: str) -> onnx.ModelProto:
    """x·0.5·(1+erf(x/√2)) or its tanh approximation, in the groupings exporters write."""
    f32 = TensorProto.FLOAT
    c = {"half": 0.5, "one": 1.0, "sqrt2": math.sqrt(2), "inv_sqrt2": 1 / math.sqrt(2), "k": math.sqrt(2 / math.pi),
         "cubic": 0.044715, "three": 3.0}
    nodes = [const(name, value, np.float32) for name, value in c.items()]
    if form.startswith("tanh"):
        if form == "tanh_pow":
            nodes.append(helper.make_node("Pow", ["x", "three"], ["cube"]))
        else:
            nodes += [helper.make_node("Mul", ["x", "x"], ["sq"]), helper.make_node("Mul", ["x", "sq"], ["cube"])]
        nodes += [helper.make_node("Mul", ["cubic", "cube"], ["c3"]), helper.make_node("Add", ["x", "c3"], ["inner"]),
                  helper.make_node("Mul", ["k", "inner"], ["arg"]), helper.make_node("Tanh", ["arg"], ["t"]),
                  helper.make_node("Add", ["one", "t"], ["e"])]
    else:
        scaled = helper.make_node("Mul", ["x", "inv_sqrt2"], ["s"]) if "mul" in form else helper.make_node("Div", ["x", "sqrt2"], ["s"])
        nodes += [scaled, helper.make_node("Erf", ["s"], ["erf"]), helper.make_node("Add", ["erf", "one"], ["e"])]
    if form.endswith("half_first"):  # (x·0.5)·e
        nodes += [helper.make_node("Mul", ["x", "half"], ["xh"]), helper.make_node("Mul", ["xh", "e"], ["y"], name="/act/Mul_1")]
    elif form.endswith("half_inner"):  # x·(e·0.5)
        nodes += [helper.make_node("Mul", ["e", "half"], ["eh"]), helper.make_node("Mul", ["x", "eh"], ["y"], name="/act/Mul_1")]
    else:  # (x·e)·0.5, the legacy exporter's order
        nodes += [helper.make_node("Mul", ["x", "e"], ["xe"]), helper.make_node("Mul", ["xe", "half"], ["y"], name="/act/Mul_1")]
    return make_model(nodes, [helper.make_tensor_value_info("x", f32, ["b", 5])], [helper.make_tensor_value_info("y", f32, None)])


@pytest.mark.parametrize("form", ["erf_div", "erf_mul", "erf_div_half_first", "erf_mul_half_inner", "tanh_pow",
                                  "tanh_cube", "tanh_pow_half_first", "tanh_cube_half_inner"])
def test_gelu_chains_become_one_gelu(form: str) -> None:
    model = _gelu_graph(form)
    twin = build_torch_twin(model)
    modules = [m for m in twin.modules() if m is not twin and m is not twin.constants]
    assert len(modules) == 1 and isinstance(modules[0], nn.GELU)
    assert modules[0].approximate == ("tanh" if form.startswith("tanh") else "none")
    assert dict(twin.named_modules())["act"] is modules[0]  # the chain's module path
    x = torch.randn(64, 5) * 3
    np.testing.assert_allclose(twin(x).numpy(), ort_run(model, x.numpy())[0], rtol=1e-6, atol=1e-6)


def test_chain_read_elsewhere_is_not_fused() -> None:
    model = _gelu_graph("erf_div")
    model.graph.output.append(helper.make_tensor_value_info("erf", TensorProto.FLOAT, None))
    twin = build_torch_twin(model)
    assert not any(isinstance(m, nn.GELU) for m in twin.modules())
    x = torch.randn(8, 5)
    for got, want in zip(twin(x), ort_run(model, x.numpy())):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-6)


class ConvNeXtBlock(nn.Module):
    """Depthwise 7×7, LayerNorm over channels-last, Linear, GELU, Linear, layer scale."""

    def __init__(self, dim: int = 8, approximate: str = "none") -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, dim, 2, 2)
        self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pw1 = nn.Linear(dim, 2 * dim)
        self.act = nn.GELU(approximate=approximate)
        self.pw2 = nn.Linear(2 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 0.5))
        self.head = nn.Linear(dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.pw2(self.act(self.pw1(self.norm(self.dw(x).permute(0, 2, 3, 1))))) * self.gamma
        return self.head((x + y.permute(0, 3, 1, 2)).mean((2, 3)))


@pytest.mark.parametrize(("opset", "approximate"), [(13, "none"), (17, "none"), (13, "tanh")])
def test_legacy_convnext_fuses_layer_norm_gelu_and_linear(opset: int, approximate: str) -> None:
    torch.manual_seed(0)
    module, x = ConvNeXtBlock(approximate=approximate).eval(), torch.randn(2, 3, 16, 16)
    model = legacy_export(module, x, opset)
    assert ("LayerNormalization" in _ops(model)) == (opset >= 17) and "Gelu" not in _ops(model)
    twin = assert_matches_eager(module, model, x)
    modules = dict(twin.named_modules())
    assert isinstance(modules["act"], nn.GELU) and modules["act"].approximate == approximate
    assert not any(m.__class__.__name__ == "Lambda" and "erf" in repr(m) for m in modules.values())
    # the fused LayerNorm and Linear layers keep their parameters, read from the initializers
    assert isinstance(modules["norm"], nn.LayerNorm) and modules["norm"].normalized_shape == (8,)
    sources = twin.onnx_sources
    assert sources["norm.weight"].initializer == "norm.weight" and sources["norm.bias"].initializer == "norm.bias"
    for name in ("pw1", "pw2"):
        assert isinstance(modules[name], nn.Linear)
        assert sources[f"{name}.bias"].initializer == f"{name}.bias"
    # the parameters are the ones the graph computes with: write them back and onnxruntime agrees
    from audit.models.onnx_graph import write_back

    torch.manual_seed(1)
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    written = write_back(twin, model)
    with torch.no_grad():
        np.testing.assert_allclose(ort_run(written, x.numpy())[0], twin(x).numpy(), rtol=1e-5, atol=1e-5)
