"""Normalisation and class names read from the model file (ONNX metadata_props, TorchScript and
torch.export extra files): the model then sees the same input as with the flags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from audit.cli.main import main
from audit.errors import AuditError
from audit.models.loader import ModelOptions, load_classifier
from tests.conftest import TinyCNN, export_onnx

STORED = {"mean": [0.5], "std": [0.25], "value_range": [0, 255], "class_names": ["benign", "malignant"]}


def _files(tmp_path: Path, document: dict | str) -> dict[str, Path]:
    text = document if isinstance(document, str) else json.dumps(document)
    torch.manual_seed(0)
    module = TinyCNN().eval()
    plain = export_onnx(module, tmp_path / "plain.onnx")
    proto = onnx.load(plain)
    onnx.helper.set_model_props(proto, {"audit": text})
    onnx.save(proto, tmp_path / "m.onnx")
    example = torch.rand(2, 1, 28, 28)
    torch.jit.save(torch.jit.trace(module, example), tmp_path / "m.pt", _extra_files={"audit.json": text})
    program = torch.export.export(module, (example,), dynamic_shapes=({0: torch.export.Dim("n", min=1, max=1024)},))
    torch.export.save(program, tmp_path / "m.pt2", extra_files={"audit.json": text})
    return {"onnx": tmp_path / "m.onnx", "torchscript": tmp_path / "m.pt", "torch.export": tmp_path / "m.pt2"}


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "torch.export"])
def test_stored_normalisation_and_class_names_are_used_and_flags_win(tmp_path, fmt) -> None:
    path = _files(tmp_path, STORED)[fmt]
    options = ModelOptions(input_size=(28, 28), channels=1)
    stored = load_classifier(path, options)
    assert (stored.spec.mean, stored.spec.std, stored.spec.value_range) == ((0.5,), (0.25,), (0.0, 255.0))
    assert stored.class_names == ["benign", "malignant"] and stored.spec.source == "model metadata"
    images = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    expected = (images.transpose(0, 3, 1, 2) * 255 - 0.5) / 0.25  # by hand: scale to [0, 255], then (x − mean) / std
    assert np.allclose(stored.to_input(images).numpy(), expected, rtol=1e-6)
    flagged = load_classifier(path, ModelOptions(input_size=(28, 28), channels=1, mean=(0.0,), class_names=("a", "b")))
    assert flagged.spec.mean == (0.0,) and flagged.spec.std == (0.25,) and flagged.class_names == ["a", "b"]
    assert flagged.spec.source == "command line and model metadata"
    bare = load_classifier(tmp_path / "plain.onnx")
    assert (bare.spec.mean, bare.spec.std, bare.spec.value_range) == ((0.0,), (1.0,), (0.0, 1.0))
    assert bare.spec.source.startswith("defaults")


@pytest.mark.parametrize(("document", "named"), [
    ("{not json", "is not JSON"), ('["a"]', "must be a JSON object"), ({"std": [0]}, "std must be > 0"),
    ({"mean": ["x"]}, "mean must be a non-empty list of finite numbers"), ({"value_range": [1, 0]}, "low < high"),
    ({"class_names": ["a", "a"]}, "distinct"), ({"class_names": ["a", "b", "c"]}, "class_names gives 3 names"),
])
def test_malformed_metadata_is_one_line_naming_the_file(tmp_path, capsys, document, named) -> None:
    path = _files(tmp_path, document)["onnx"]
    with pytest.raises(AuditError, match=named):
        load_classifier(path)
    code = main(["run", str(path), "--data", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and str(path) in err and named.split()[0] in err
