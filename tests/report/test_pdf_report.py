"""The PDF of a real audit: valid, complete, its numbers those of results.json, names literal."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
from pypdf import PdfReader

from audit.errors import AuditError
from audit.report.pdf import write_report
from audit.report.pdf.text import number, with_interval
from tests.report.conftest import ODD_CLASSES, Report, read_pages

CAPTION_TITLES = (
    "Global saliency on the artefact per class",
    "Artefact enrichment per class",
    "Peak saliency share per class",
    "Performance with and without the artefact",
    "Ablation: removing the artefact, keeping only the region",
    "Response-rate accuracy curves (AURRAC)",
    "Localisation on the region per method",
    "Randomisation sanity check",
    "Mean saliency map per class",
    "Examples: gradient",
    "Examples: grad-cam",
)


def flat(text: str) -> str:
    return " ".join(text.split())


def test_pdf_is_valid_and_numbered(report: Report) -> None:
    assert report.pdf.read_bytes().startswith(b"%PDF-")
    count = len(PdfReader(report.pdf).pages)
    assert count >= 8
    for index, page in enumerate(report.pages, start=1):
        assert f"page {index} of {count}" in page


def test_first_page_has_model_data_and_headline_numbers(report: Report) -> None:
    first = flat(report.pages[0])
    results = report.results
    assert results["model"]["sha256"][:16] in first.replace(" ", "")
    assert "biased.onnx" in first and "onnx (CPUExecutionProvider)" in first
    assert "24 audited, 0 skipped" in first
    assert "no gate" in first
    assert "The model uses the artefact" in first  # the biased model: removing the box flips predictions
    for name, entry in results["methods"].items():
        enrichment = entry["artefact"]["enrichment"]
        assert number(enrichment["overall"]) in first, name
        assert f"{number(enrichment['ci95'][0])}–{number(enrichment['ci95'][1])}" in first, name
        assert number(entry["artefact"]["peak_share"]["overall"]) in first, name
        assert number(entry["region"]["iou"]["mean"]) in first, name
        assert number(entry["randomization"]["cascading"][-1]["spearman"]) in first, name
    best = max(results["methods"].values(), key=lambda e: e["artefact"]["enrichment"]["overall"])
    assert with_interval(best["artefact"]["enrichment"]["overall"], best["artefact"]["enrichment"]["ci95"]) in first


def test_every_figure_is_present_with_its_caption(report: Report) -> None:
    text = report.text
    for number_, title in enumerate(CAPTION_TITLES, start=1):
        assert f"Figure {number_}. {title}" in text
    assert "Figure 12." not in text
    assert "Unavailable" not in text
    # every synthetic image carries the box: Figure 4 is one sentence instead of a chart with an empty subset
    labelled = report.results["performance"]["n"]
    assert report.results["performance"]["by_artefact"]["absent"]["n"] == 0
    assert f"All of the {labelled} labelled images carry the artefact, so there is no subset without it" in " ".join(text.split())
    images = sum(len(page.images) for page in PdfReader(report.pdf).pages)
    assert images == len(CAPTION_TITLES) - 1


def test_class_names_and_command_are_shown_literally(report: Report) -> None:
    text = report.text
    for name in ODD_CLASSES:
        assert name in text
    assert "--data 'a b/<x>&y'" in text
    assert "&amp;" not in text and "&lt;" not in text


def test_appendix_has_definitions_versions_and_seed(report: Report) -> None:
    text = report.text
    assert "Pfau, Young, Wei & Keiser (2019)" in text and "Adebayo" in text
    assert "Seed 0" in text
    for package in ("torch", "onnxruntime", "captum", "numpy", "scikit-learn", "scipy", "reportlab", "matplotlib"):
        assert package in text
    assert "at least 10% of the predictions" in text  # the finding's threshold, stated


def test_gate_outcomes_and_null_metrics_are_shown(report: Report, tmp_path: Path) -> None:
    results = copy.deepcopy(report.results)
    results["methods"]["gradient"]["aurrac"].update(value=None, reason="no labelled image has an artefact mask")
    results["gate"] = {
        "checks": [
            {"expression": "methods.gradient.artefact.enrichment.overall > 2.0", "value": 5.25, "outcome": "fail", "reason": "5.250 > 2.0"},
            {"expression": "performance.auc < 0.8", "value": None, "outcome": "pass", "reason": "allowed missing"},
        ],
        "passed": False,
    }
    first = flat(read_pages(write_report(results, tmp_path, tmp_path / "gate.pdf"))[0])  # no maps there: faster
    assert "Release gate: FAIL (1 of 2 checks fail)" in first
    assert "methods.gradient.artefact.enrichment.overall > 2.0" in first and "5.250" in first
    assert "performance.auc < 0.8" in first and "PASS" in first
    assert "no gate" not in first
    assert "n/a: gradient, AURRAC: no labelled image has an artefact mask" in first


def test_report_without_maps_or_per_image_table_says_so_in_place(report: Report, tmp_path: Path) -> None:
    run_dir = tmp_path / "bare"
    run_dir.mkdir()
    shutil.copy(report.run_dir / "results.json", run_dir)
    text = flat(" ".join(read_pages(write_report(report.results, run_dir, tmp_path / "bare.pdf"))))
    assert f"Unavailable: {run_dir / 'maps' / 'gradient.npz'} not found" in text
    assert f"Unavailable: {run_dir / 'per_image.csv'} not found" in text
    for title in CAPTION_TITLES:
        assert title in text
    assert number(report.results["methods"]["gradient"]["artefact"]["enrichment"]["overall"]) in text


def test_results_without_required_sections_are_rejected(report: Report, tmp_path: Path) -> None:
    results = {k: v for k, v in report.results.items() if k != "methods"}
    with pytest.raises(AuditError, match=r"results\.json: missing methods"):
        write_report(results, report.run_dir, tmp_path / "x.pdf")
    assert not (tmp_path / "x.pdf").exists()


def test_numbers_and_intervals_are_formatted_for_reading() -> None:
    from audit.report.pdf.text import escape, interval, percent

    assert number(5.93268) == "5.933" and number(None) == "n/a" and number(float("nan")) == "n/a" and number(True) == "n/a"
    assert interval([1.5, 2.25]) == "1.500–2.250" and interval([-0.5, 0.25]) == "-0.500 to 0.250" and interval(None) == ""
    assert with_interval(None, [1, 2]) == "n/a" and percent(0.5) == "50.0%"
    assert escape("<b>&co") == "&lt;b&gt;&amp;co"


def test_first_page_shows_the_stored_finding_and_marks_a_method_that_failed_the_sanity_check(report: Report, tmp_path: Path) -> None:
    assert report.results["finding"]["code"] == "uses_artefact"
    results = copy.deepcopy(report.results)
    results["finding"].update(sentence="A stored <sentence>", detail="A stored detail & more.")
    results["methods"]["grad-cam"]["sanity"]["status"] = "failed"
    first = flat(read_pages(write_report(results, tmp_path, tmp_path / "stored.pdf"))[0])
    assert "A stored <sentence> A stored detail & more." in first
    assert "grad-cam failed sanity check: not evidence" in first and "gradient failed" not in first
    del results["finding"]  # a results.json from before the finding: computed from the numbers
    first = flat(read_pages(write_report(results, tmp_path, tmp_path / "old.pdf"))[0])
    assert "The model uses the artefact" in first and "Left out: grad-cam" in first


def test_the_run_s_warnings_are_caveats_on_page_one(report: Report, tmp_path) -> None:
    from audit.report.pdf import write_report

    results = {**report.results, "warnings": [f"caveat number {i}" for i in range(7)]}
    pdf = write_report(results, report.run_dir, tmp_path / "caveats.pdf")
    first = " ".join(read_pages(pdf)[0].split())
    assert "Caveat: caveat number 0" in first and "Caveat: caveat number 4" in first
    assert "caveat number 5" not in first and "… and 2 more caveats in results.json (warnings)" in first
