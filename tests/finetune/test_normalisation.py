"""BatchNorm put back where an exporter folded it away: found from the graph, the identity at the
start, trained on batch statistics, folded back and written in the model's own format."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import onnxruntime
import pytest
import torch
from torch import nn

from audit.finetune.export import write_model
from audit.finetune.normalisation import WithBatchNorm, exportable, fold_into, inner, trainable, unnormalised_convolutions
from audit.errors import AuditError
from audit.models.loader import ImageByImage, ModelOptions, load_classifier

torch.set_num_threads(1)
X = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))


class BiasFree(nn.Module):
    """Convolutions without bias or normalisation (folding must create the bias)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.ReLU(),
                                      nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False), nn.ReLU())
        self.fc = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def _legacy_onnx(module: nn.Module, path: Path) -> Path:
    """The legacy exporter with its defaults: BatchNorm folded into the convolutions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (X[:2],), str(path), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "n"}})
    return path


class BakedBatch(nn.Module):
    """A head that reshapes to a batch of one: its graph cannot take a batch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, stride=4)
        self.fc = nn.Linear(2 * 7 * 7, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).reshape(1, -1))


def _fixed_batch_onnx(module: nn.Module, path: Path) -> Path:
    """The legacy exporter without dynamic axes: the input is declared with a batch of 1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (X[:1],), str(path), dynamo=False, input_names=["x"])
    return path


def _steps(model: nn.Module, n: int = 3) -> None:
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(n):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(X), torch.arange(16) % 2).backward()
        optimiser.step()


def test_folded_and_kept_batch_norm_are_told_apart(tiny_model_files: dict, tmp_path: Path) -> None:
    kept = load_classifier(tiny_model_files["torchscript"], ModelOptions(input_size=(28, 28), channels=1)).differentiable
    folded = load_classifier(_legacy_onnx(tiny_model_files["module"], tmp_path / "folded.onnx")).differentiable
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    convs = lambda model: [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]  # noqa: E731
    assert unnormalised_convolutions(kept, X) == convs(kept)[1:]  # TinyCNN: conv-BN-ReLU, then conv-ReLU
    assert unnormalised_convolutions(folded, X) == convs(folded) and len(convs(folded)) == 2


def test_group_norm_exported_to_onnx_counts_as_normalisation(tmp_path: Path) -> None:
    """The legacy exporter writes GroupNorm as Reshape, InstanceNormalization, Reshape."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.ReLU(), nn.Conv2d(8, 4, 3), nn.Flatten(),
                           nn.Linear(4 * 26 * 26, 2))
    twin = load_classifier(_legacy_onnx(module, tmp_path / "group.onnx")).differentiable
    assert not any(isinstance(m, nn.GroupNorm) for m in twin.modules())
    convs = [n for n, m in twin.named_modules() if isinstance(m, nn.Conv2d)]
    assert unnormalised_convolutions(twin, X) == convs[1:]


def test_inserted_batch_norm_starts_as_the_identity_with_the_data_statistics(tiny_model_files: dict, tmp_path: Path) -> None:
    twin = load_classifier(_legacy_onnx(tiny_model_files["module"], tmp_path / "folded.onnx")).differentiable
    with torch.no_grad():
        before = twin(X)
    outputs = {}
    first = next(m for m in twin.modules() if isinstance(m, nn.Conv2d))
    handle = first.register_forward_hook(lambda m, i, o: outputs.setdefault("first", o.detach()))
    twin(X)
    handle.remove()
    model = trainable(twin, X, [X[:7], X[7:]])
    assert isinstance(model, WithBatchNorm) and len(model.norms) == 2
    norm = model.norms["0"]
    expected = outputs["first"].double()
    assert norm.running_mean.double() == pytest.approx(expected.mean(dim=(0, 2, 3)), abs=1e-6)
    assert norm.running_var.double() == pytest.approx(expected.var(dim=(0, 2, 3), unbiased=False), abs=1e-6)
    with torch.no_grad():
        assert torch.allclose(model.eval()(X), before, atol=1e-5)


def test_training_uses_batch_statistics_and_the_fold_keeps_the_function(tiny_model_files: dict, tmp_path: Path) -> None:
    twin = load_classifier(_legacy_onnx(tiny_model_files["module"], tmp_path / "folded.onnx")).differentiable
    model = trainable(twin, X, [X])
    _steps(model)
    assert int(model.norms["0"].num_batches_tracked) == 3
    with torch.no_grad():
        trained = model.eval()(X)
        folded = exportable(model)
        assert not any(m._forward_hooks for m in folded.modules())
        assert torch.allclose(folded(X), trained, atol=1e-5)


def test_a_deep_copy_trains_its_own_inserted_layers(tiny_model_files: dict, tmp_path: Path) -> None:
    twin = load_classifier(_legacy_onnx(tiny_model_files["module"], tmp_path / "folded.onnx")).differentiable
    model = trainable(twin, X, [X]).eval()
    with torch.no_grad():
        original = model(X)
    twin_copy = copy.deepcopy(model)
    with torch.no_grad():
        twin_copy.norms["0"].bias.add_(1.0)
        assert torch.allclose(model(X), original)
        assert not torch.allclose(twin_copy(X), original, atol=1e-3)
    assert inner(twin_copy) is twin_copy.model


def test_folding_into_a_bias_free_convolution_creates_the_bias() -> None:
    conv = nn.Conv2d(1, 3, 3, bias=False)
    norm = nn.BatchNorm2d(3).eval()
    with torch.no_grad():
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
        norm.weight.uniform_(0.5, 2)
        norm.bias.uniform_(-1, 1)
        expected = norm(conv(X))
        fold_into(conv, norm)
        assert conv.bias is not None and torch.allclose(conv(X), expected, atol=1e-5)


def test_a_bias_free_model_is_written_back_as_onnx_with_the_new_biases(tmp_path: Path) -> None:
    path = _legacy_onnx(BiasFree(), tmp_path / "bias-free.onnx")
    classifier = load_classifier(path)
    model = trainable(copy.deepcopy(classifier.differentiable), X, [X])
    assert len(model.norms) == 2
    _steps(model)
    with torch.no_grad():
        trained = model.eval()(X)
    written = write_model(classifier, exportable(model), tmp_path / "tuned.onnx")
    session = onnxruntime.InferenceSession(str(written), providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: X.numpy()})[0]
    assert torch.allclose(torch.from_numpy(logits), trained, atol=1e-4)


def test_a_graph_fixed_at_batch_one_trains_on_whole_batches_when_it_can(tiny_model_files: dict, tmp_path: Path) -> None:
    classifier = load_classifier(_fixed_batch_onnx(tiny_model_files["module"], tmp_path / "fixed.onnx"))
    assert classifier.batch_limit == 1 and isinstance(classifier.differentiable, ImageByImage)
    model = trainable(copy.deepcopy(classifier.differentiable), X, [X])
    assert not isinstance(inner(model), ImageByImage)
    with torch.no_grad():
        assert torch.allclose(model.eval()(X), classifier.logits(X), atol=1e-4)


def test_a_graph_with_the_batch_baked_in_is_refused_in_one_line(tmp_path: Path) -> None:
    path = _fixed_batch_onnx(BakedBatch(), tmp_path / "baked.onnx")
    classifier = load_classifier(path)
    with pytest.raises(AuditError, match="fixed at a batch of one and cannot take a batch.*dynamic batch dimension"):
        trainable(copy.deepcopy(classifier.differentiable), X, [X], str(path))
