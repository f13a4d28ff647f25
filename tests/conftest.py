"""Shared fixtures: small real model files and a small synthetic dataset written to disk."""

from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import torch
from torch import nn


@contextmanager
def installed_plugins(root: Path, packages: dict[str, tuple[str, dict[str, str]]], monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Real entry points, in the layout pip installs: per package a ``<name>-1.0.dist-info`` folder
    (METADATA, entry_points.txt) and its modules, on sys.path; the plugin registries load them
    afresh, and again without them afterwards. ``packages``: name → (entry_points.txt, {module: source})."""
    from audit.data.readers import readers
    from audit.finetune.losses import losses
    from audit.saliency import methods

    for package, (entry_points, modules) in packages.items():
        info = root / f"{package.replace('-', '_')}-1.0.dist-info"  # importlib.metadata reads the name up to the first '-'
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(entry_points)
        for module, source in modules.items():
            (root / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(root))
    registries = (methods, readers, losses)
    for registry in registries:
        registry.refresh()
    try:
        yield root
    finally:
        for _, modules in packages.values():
            for module in modules:
                sys.modules.pop(module, None)
        for registry in registries:
            registry.refresh()  # loads again, lazily, once monkeypatch has taken the folder off sys.path


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    """The bad-input contract: exit 2, one stderr line ``audit: error: …`` holding every word, no traceback."""
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("audit: error:"), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, lines[0])


class TinyCNN(nn.Module):
    """Conv-BN-ReLU-Conv-ReLU-pool-Linear, 1×28×28 → 2 logits."""

    def __init__(self, channels: int = 1, classes: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU()
        )
        self.head = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def export_onnx(module: nn.Module, path: Path, shape: tuple[int, ...] = (1, 28, 28)) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(), (torch.rand(2, *shape),), str(path), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "n"}}
        )
    return path


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tests run small models; on two shared cores they are ~10x faster on one torch thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny-models")
    module = TinyCNN().eval()
    torch.jit.script(module).save(str(root / "tiny.pt"))
    return {"module": module, "onnx": export_onnx(module, root / "tiny.onnx"), "torchscript": root / "tiny.pt"}


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from audit.data.synthetic import make_synthetic

    return make_synthetic(tmp_path_factory.mktemp("synthetic") / "data", seed=3, n_train=8, n_valid=24, n_test=8)
