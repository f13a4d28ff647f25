"""An autoencoder trained once per session by ``train_autoencoder`` on the synthetic data, and the
sample classifiers (``biased`` reads the box, ``unbiased`` counts the crosses)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from audit.counterfactual.storage import load_autoencoder
from audit.counterfactual.training import TrainConfig, train_autoencoder
from audit.data.synthetic import make_synthetic
from audit.models.loader import load_classifier

SAMPLES = Path(__file__).resolve().parents[2] / "sample_models"


@pytest.fixture(scope="session")
def trained_autoencoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ae.pt trained on 320 synthetic training images for 6 epochs (about 20 s on one thread)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = make_synthetic(tmp_path_factory.mktemp("ae-data") / "data", seed=0, n_train=320, n_valid=2, n_test=2)
    out = tmp_path_factory.mktemp("ae") / "ae.pt"
    train_autoencoder(root / "train" / "images", out, TrainConfig(epochs=6, seed=0), progress=False)
    torch.set_num_threads(before)
    return out


@pytest.fixture(scope="session")
def autoencoder(trained_autoencoder: Path) -> torch.nn.Module:
    return load_autoencoder(trained_autoencoder)


@pytest.fixture(scope="session")
def classifiers():
    return {name: load_classifier(SAMPLES / f"{name}.onnx") for name in ("biased", "unbiased")}
