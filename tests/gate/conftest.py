"""Real results.json files from small audits of the biased and unbiased sample models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

SAMPLE_MODELS = Path(__file__).resolve().parents[2] / "sample_models"


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run folders ``biased`` and ``unbiased``: gradient saliency on 16 synthetic validation images."""
    from audit.data.dataset import open_dataset
    from audit.data.synthetic import make_synthetic
    from audit.models.loader import ModelOptions, load_classifier
    from audit.pipeline import RunConfig, run_audit

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("gate")
    valid = make_synthetic(root / "data", seed=1, n_train=2, n_valid=16, n_test=2) / "valid"
    folders = {}
    for name in ("biased", "unbiased"):
        classifier = load_classifier(SAMPLE_MODELS / f"{name}.onnx", ModelOptions())
        spec = classifier.spec
        dataset = open_dataset(
            valid / "images", size=(spec.height, spec.width), channels=spec.channels,
            masks=valid / "artefacts", regions=valid / "regions",
        )
        classifier.class_names = list(dataset.classes)
        run_audit(classifier, dataset, RunConfig(methods=["gradient"], randomization_images=0), root / name)
        folders[name] = root / name
    return folders


@pytest.fixture(scope="session")
def results(runs: dict[str, Path]) -> dict[str, dict]:
    return {name: json.loads((folder / "results.json").read_text()) for name, folder in runs.items()}
