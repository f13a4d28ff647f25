"""Round trip: a fine-tuned model written back in its own format loads and matches the trained one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from audit.errors import AuditError
from audit.finetune.export import SUFFIXES, check_writable, write_model
from audit.models.classifier import from_module
from audit.models.loader import ModelOptions, load_classifier
from audit.models.spec import InputSpec
from tests.conftest import TinyCNN

torch.set_num_threads(1)
OPTIONS = ModelOptions(input_size=(28, 28), channels=1)


def _fine_tune(model: torch.nn.Module) -> None:
    """A few Adam steps, so that the weights differ from the file's."""
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0)), torch.arange(8) % 2
    for _ in range(3):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_fine_tuned_model_round_trips(kind: str, tiny_model_files: dict, tmp_path: Path) -> None:
    classifier = load_classifier(tiny_model_files[kind], OPTIONS)
    model = classifier.differentiable
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    original = classifier.logits(x)
    _fine_tune(model)
    with torch.no_grad():
        trained = model(x)
    assert (trained - original).abs().max() > 1e-2
    path = write_model(classifier, model, tmp_path / f"tuned{SUFFIXES[classifier.format]}")
    reloaded = load_classifier(path, OPTIONS)
    assert reloaded.format == classifier.format
    assert torch.allclose(reloaded.logits(x), trained, atol=1e-4)


def test_torch_export_round_trips_with_a_dynamic_batch(tmp_path: Path) -> None:
    module = TinyCNN().eval()
    program = torch.export.export(module, (torch.rand(2, 1, 28, 28),), dynamic_shapes={"x": {0: torch.export.Dim("b")}})
    torch.export.save(program, tmp_path / "tiny.pt2")
    classifier = load_classifier(tmp_path / "tiny.pt2")
    model = classifier.differentiable
    _fine_tune(model)
    path = write_model(classifier, model, tmp_path / "tuned.pt2")
    x = torch.rand(7, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(load_classifier(path).logits(x), model(x), atol=1e-4)


def test_a_model_without_a_file_to_write_back_fails_before_training() -> None:
    in_memory = from_module(TinyCNN(), InputSpec(1, 28, 28), ["a", "b"], format="onnx")
    with pytest.raises(AuditError, match="could not be written back as onnx.*nothing was trained"):
        check_writable(in_memory, OPTIONS)
    other = from_module(TinyCNN(), InputSpec(1, 28, 28), ["a", "b"], format="keras")
    with pytest.raises(AuditError, match="format 'keras' cannot be written back"):
        check_writable(other, OPTIONS)
