"""A written WILDCAT model is an ordinary input of ``audit run``: its differentiable twin (what
Grad-CAM, guided backprop and the randomisation check hook) builds in every format and gives
the file's logits. A traced .pt keeps no tensor ranks, and the ONNX exporter that builds a .pt's
twin refused the head's ``unflatten`` ("ONNX export of operator dim")."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from audit.finetune.wildcat.export import run_written, write_wildcat
from audit.finetune.wildcat.network import build_wildcat
from audit.models.loader import ModelOptions, load_classifier
from tests.conftest import TinyCNN
from tests.finetune.zoo import export


@pytest.mark.parametrize("how", ["torchscript", "onnx-folded", "torch.export"])
def test_the_written_models_twin_builds_and_gives_its_logits(how: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    suffix = {"torchscript": ".pt", "onnx-folded": ".onnx", "torch.export": ".pt2"}[how]
    options = ModelOptions(input_size=(28, 28), channels=1)
    classifier = load_classifier(export(TinyCNN(), tmp_path / f"tiny{suffix}", how), options)
    written = write_wildcat(classifier, build_wildcat(classifier, maps=2), tmp_path / f"wildcat{suffix}")
    reloaded = load_classifier(written, options)
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    logits, _ = run_written(written, classifier.format, x)
    with torch.no_grad():
        twin = reloaded.layered(x)
    assert twin.shape == (3, 2)
    assert torch.allclose(twin, logits, atol=1e-5)
