"""Gate keys are checked against the run's outline (results.json before any image) before the
first image is read; the outline never refuses a key that the finished run has."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from audit.cli.main import main
from audit.data.dataset import Dataset, open_dataset
from audit.models.loader import ModelOptions, load_classifier
from audit.pipeline import RunConfig, run_audit
from audit.report.gate.keys import outline_lacks, value_keys

SAMPLE_MODELS = Path(__file__).resolve().parents[2] / "sample_models"


@pytest.mark.parametrize(
    ("methods", "masks", "regions", "randomised"),
    [(["gradient", "grad-cam"], True, True, 2), (["integrated-gradients"], False, True, 0), (["occlusion"], True, False, 1)],
)
def test_every_key_of_a_finished_run_is_allowed_by_its_outline(tmp_path, methods, masks, regions, randomised) -> None:
    from audit.data.synthetic import make_synthetic

    torch.set_num_threads(1)
    valid = make_synthetic(tmp_path / "data", seed=2, n_train=2, n_valid=6, n_test=2) / "valid"
    classifier = load_classifier(SAMPLE_MODELS / "biased.onnx", ModelOptions())
    dataset = open_dataset(valid / "images", size=(28, 28), channels=1, masks=valid / "artefacts" if masks else None,
                           regions=valid / "regions" if regions else None)
    classifier.class_names = list(dataset.classes)
    outlines: list[dict] = []
    config = RunConfig(methods=methods, randomization_images=randomised, method_options={"integrated-gradients": {"n_steps": 4}})
    results = run_audit(classifier, dataset, config, tmp_path / "out", on_start=outlines.append)
    [outline] = outlines
    refused = [key for key in value_keys(results) if outline_lacks(outline, key.split("."))]
    assert refused == []
    assert outline_lacks(outline, ["methods", methods[0], "artefact", "enrichmnt", "overall"])
    assert outline_lacks(outline, ["performance", "acuracy"])


def test_a_misspelt_gate_key_fails_before_the_first_image_is_read(synthetic_root, tiny_model_files, tmp_path, capsys, monkeypatch) -> None:
    reads: list[Path] = []
    original = Dataset._read
    monkeypatch.setattr(Dataset, "_read", lambda self, path: reads.append(path) or original(self, path))
    valid = synthetic_root / "valid"
    base = ["run", tiny_model_files["onnx"], "--data", valid / "images", "--masks", valid / "artefacts", "--out", tmp_path / "o",
            "--quiet", "--method", "gradient", "--randomization-images", "0", "--workers", "0"]
    code = main([str(a) for a in [*base, "--fail-on", "methods.gradient.artefact.enrichmnt.overall > 2"]])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "no key 'methods.gradient.artefact.enrichmnt.overall'" in err and "'methods.gradient.artefact.enrichment.overall'" in err
    assert reads == [] and not (tmp_path / "o" / "results.json").exists()
    # a key the data decides (a list entry) is not refused up front: it is skipped or failed on the results
    code = main([str(a) for a in [*base, "--fail-on", "methods.gradient.randomization.cascading.-1.spearman > 0.5", "--allow-missing"]])
    assert code == 0, capsys.readouterr().err
    assert len(reads) > 0
