"""A small real audit (synthetic data, the biased sample model) and its PDF, shared by the tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from pypdf import PdfReader

ROOT = Path(__file__).resolve().parents[2]
ODD_CLASSES = ["<b>&co", "two $\\x_$ crosses"]  # markup for reportlab, broken mathtext for matplotlib


@dataclass
class Report:
    results: dict[str, Any]
    run_dir: Path
    pdf: Path
    pages: list[str]

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.pages).split())


def read_pages(pdf: Path) -> list[str]:
    return [page.extract_text() or "" for page in PdfReader(pdf).pages]


@pytest.fixture(scope="session")
def audited_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """``audit run`` on 24 synthetic images with gradient and grad-cam; classes named with markup."""
    from audit.data.dataset import open_dataset
    from audit.data.synthetic import make_synthetic
    from audit.models.loader import load_classifier
    from audit.pipeline import RunConfig, run_audit

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = make_synthetic(tmp_path_factory.mktemp("report-data") / "data", seed=5, n_train=2, n_valid=24, n_test=2)
        classifier = load_classifier(ROOT / "sample_models" / "biased.onnx")
        valid = data / "valid"
        dataset = open_dataset(valid / "images", size=(28, 28), channels=1, masks=valid / "artefacts", regions=valid / "regions")
        classifier.class_names = list(ODD_CLASSES)
        out = tmp_path_factory.mktemp("report-run")
        config = RunConfig(methods=["gradient", "grad-cam"], randomization_images=4, command="audit run biased.onnx --data 'a b/<x>&y'")
        results = run_audit(classifier, dataset, config, out)
    finally:
        torch.set_num_threads(threads)
    return results, out


@pytest.fixture(scope="session")
def report(audited_run: tuple[dict[str, Any], Path]) -> Report:
    from audit.report.pdf import write_report

    results, run_dir = audited_run
    pdf = write_report(results, run_dir, run_dir / "report.pdf")
    return Report(results, run_dir, pdf, read_pages(pdf))
