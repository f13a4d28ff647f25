"""Latent Shift strips: ``save_strips`` after a real ``run_audit`` with latentshift-max (the biased
sample model and the sample autoencoder), and the report's counterfactual page drawn from them."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pypdf import PdfReader

from audit.counterfactual.strips import STRIPS, latentshift_method, save_strips
from audit.report.pdf import write_report
from audit.report.pdf.fig_counterfactuals import sections
from audit.report.pdf.inputs import RunFiles
from tests.report.conftest import ROOT, read_pages

METHOD = "latentshift-max"
OPTIONS = {"autoencoder": str(ROOT / "sample_models" / "autoencoder.pt")}
CAPTION = "Figure 11. Counterfactuals: latentshift-max"


@dataclass
class StripRun:
    results: dict[str, Any]
    run_dir: Path
    classifier: Any
    strips: Path


@pytest.fixture(scope="module")
def strip_run(tmp_path_factory: pytest.TempPathFactory) -> StripRun:
    from audit.data.dataset import open_dataset
    from audit.data.synthetic import make_synthetic
    from audit.models.loader import load_classifier
    from audit.pipeline import RunConfig, run_audit

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = make_synthetic(tmp_path_factory.mktemp("strip-data") / "data", seed=5, n_train=2, n_valid=12, n_test=2)
        valid = data / "valid"
        dataset = open_dataset(valid / "images", size=(28, 28), channels=1, masks=valid / "artefacts", regions=valid / "regions")
        classifier = load_classifier(ROOT / "sample_models" / "biased.onnx")
        run_dir = tmp_path_factory.mktemp("strip-run")
        config = RunConfig(methods=[METHOD], method_options={METHOD: dict(OPTIONS)}, randomization_images=0)
        run_audit(classifier, dataset, config, run_dir)
        strips = save_strips(classifier, config.method_options[METHOD], run_dir / "maps" / f"{METHOD}.npz", run_dir / STRIPS)
    finally:
        torch.set_num_threads(threads)
    assert strips == run_dir / STRIPS
    return StripRun(json.loads((run_dir / "results.json").read_text()), run_dir, classifier, strips)


def test_strips_hold_the_most_artefact_salient_images_with_falling_predictions(strip_run: StripRun) -> None:
    with np.load(strip_run.strips) as s, np.load(strip_run.run_dir / "maps" / f"{METHOD}.npz") as examples:
        n, frames = s["frames"].shape[:2]
        assert s["frames"].shape == (4, frames, 28, 28, 1) and frames == 10  # ShiftOptions.frames: λ_low … 0
        assert s["images"].shape == (4, 28, 28, 1) and s["maps"].shape == (4, 28, 28)
        assert s["lambdas"].shape == s["predictions"].shape == (4, frames)
        assert list(s["paths"]) == list(examples["most_artefact_salient/path"][:4])
        assert (s["targets"] == examples["most_artefact_salient/prediction"][:4]).all()
        assert list(s["target_names"]) == [strip_run.classifier.class_names[t] for t in s["targets"]]
        assert str(s["method"]) == METHOD and str(s["map"]) == "max"
        lambdas, p = s["lambdas"], s["predictions"]
        assert (lambdas[:, 0] == 0).all() and (np.diff(lambdas, axis=1) < 0).all()  # λ = 0 first, then down to λ_low
        # The prediction falls from the reconstruction (first frame) to the counterfactual (last).
        assert (p[:, -1] < p[:, 0] - 0.1).all(), p
        assert (p[:, -1] < p[:, 0] - 0.3).sum() >= 3, p
        # Each row mostly falls frame to frame (the search stops where p turns back by over 0.01).
        assert (np.diff(p, axis=1) <= 0.05).all(), p


def test_report_gains_the_strip_page_or_says_why_not(strip_run: StripRun, tmp_path: Path) -> None:
    with_strips = write_report(strip_run.results, strip_run.run_dir, tmp_path / "with.pdf")
    pages = read_pages(with_strips)
    text = " ".join(" ".join(pages).split())
    assert CAPTION in text and "Figure 12." not in text and "strips.npz" not in text
    assert "6. What would change the prediction?" in text
    assert "Cohen et al. 2021" in text and "from λ = 0 (the autoencoder's reconstruction of x) to λ_low" in text
    strip_page = next(i for i, page in enumerate(pages) if CAPTION in " ".join(page.split()))
    assert len(PdfReader(with_strips).pages[strip_page].images) == 1

    bare = tmp_path / "bare"  # the same run without the strips file
    shutil.copytree(strip_run.run_dir, bare)
    (bare / STRIPS).unlink()
    without = write_report(strip_run.results, bare, tmp_path / "without.pdf")
    other = " ".join(" ".join(read_pages(without)).split())
    assert f"Unavailable: {bare / STRIPS} not found" in other and CAPTION in other
    assert other.count("Unavailable") == text.count("Unavailable") + 1  # the box in place of the strips (randomisation was skipped)
    assert len(PdfReader(with_strips).pages) == len(PdfReader(without).pages) + 1


def test_no_latentshift_method_no_section_and_no_examples_no_strips(strip_run: StripRun, tmp_path: Path) -> None:
    assert sections({"methods": {"gradient": {}, "grad-cam": {}}}, RunFiles(run_dir=strip_run.run_dir)) == []
    assert latentshift_method(["gradient", "latentshift-mean", METHOD]) == "latentshift-mean"
    assert latentshift_method({"latentshift": {}, "gradient": {}}) is None
    stale = tmp_path / STRIPS
    shutil.copytree(strip_run.strips.parent, stale.parent)
    assert save_strips(strip_run.classifier, OPTIONS, tmp_path / "maps" / f"{METHOD}.npz", stale) is None
    assert not stale.exists()  # a stale file from an earlier run is removed, not shown


def test_strips_explain_the_class_the_run_explained(strip_run: StripRun, tmp_path: Path) -> None:
    from audit.target import Target

    examples_npz = strip_run.run_dir / "maps" / f"{METHOD}.npz"
    out = save_strips(strip_run.classifier, OPTIONS, examples_npz, tmp_path / "label.npz", count=2, target=Target.parse("label", 2))
    with np.load(out) as s, np.load(examples_npz) as examples:
        labels = examples["most_artefact_salient/label"][:2]
        assert s["targets"].tolist() == labels.tolist()
        assert (labels != examples["most_artefact_salient/prediction"][:2]).any()  # the biased model is wrong on them
