"""The sample models: retraining reproduces the paper's finding; the committed files agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from audit.data.synthetic import generate
from sample_models.train import SmallResNet, evaluate, train

MODELS = Path(__file__).resolve().parents[2] / "sample_models"


@pytest.fixture(scope="module")
def data():
    return generate(seed=0)


@pytest.mark.slow
def test_retraining_biased_reads_the_box_and_unbiased_counts_crosses(data):
    # The script's recipe, with fewer forced epochs: the biased model stops as soon as it fits.
    biased, train_scores = train("biased", min_epochs=1)
    assert train_scores.auc > 0.95
    assert evaluate(biased, data["valid"]).auc < 0.2
    unbiased, _ = train("random", min_epochs=10)
    assert evaluate(unbiased, data["valid"]).auc > 0.8


def test_training_is_deterministic_and_restores_threads():
    threads = torch.get_num_threads()
    first, _ = train("random", n_train=64, min_epochs=2, max_epochs=2)
    second, _ = train("random", n_train=64, min_epochs=2, max_epochs=2)
    other_seed, _ = train("random", seed=1, n_train=64, min_epochs=2, max_epochs=2)
    assert torch.get_num_threads() == threads
    for name, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[name]), name
    assert not torch.equal(first.fc.weight, other_seed.fc.weight)


def test_model_is_small():
    assert sum(p.numel() for p in SmallResNet().parameters()) < 100_000


def _runners(name: str) -> dict[str, object]:
    runners: dict[str, object] = {
        "torchscript": torch.jit.load(str(MODELS / f"{name}.pt")).eval(),
        "torch.export": torch.export.load(str(MODELS / f"{name}.pt2")).module(),
    }
    onnx_files = [f"{name}.onnx"] + ([f"{name}_legacy.onnx"] if name == "biased" else [])
    for file in onnx_files:
        session = ort.InferenceSession(str(MODELS / file), providers=["CPUExecutionProvider"])
        runners[file] = lambda x, s=session: torch.from_numpy(s.run(["logits"], {"x": x.numpy()})[0])
    return runners


@pytest.mark.parametrize("name", ["biased", "unbiased"])
def test_committed_files_load_and_agree_on_a_batch_of_7(name: str, data):
    x = torch.from_numpy(data["test"].images[:7, None].copy())
    outputs = {fmt: run(x) for fmt, run in _runners(name).items()}
    reference = outputs["torchscript"]
    assert reference.shape == (7, 2)
    for fmt, out in outputs.items():
        np.testing.assert_allclose(out.detach().numpy(), reference.detach().numpy(), atol=1e-4, err_msg=fmt)
    for path in MODELS.glob(f"{name}*"):
        assert path.stat().st_size < 1_000_000, path


@torch.no_grad()
def test_committed_models_show_the_documented_behaviour(data):
    biased = torch.jit.load(str(MODELS / "biased.pt")).eval()
    unbiased = torch.jit.load(str(MODELS / "unbiased.pt")).eval()
    assert evaluate(biased, data["valid"]).auc < 0.2
    assert evaluate(unbiased, data["valid"]).auc > 0.8


@pytest.mark.parametrize("file, opset", [("biased.onnx", 20), ("unbiased.onnx", 20), ("biased_legacy.onnx", 17)])
def test_onnx_opsets_and_dynamic_batch(file: str, opset: int):
    model = onnx.load(str(MODELS / file))
    assert {o.domain: o.version for o in model.opset_import}[""] == opset
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value
