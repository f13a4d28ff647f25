"""The Table-1 rows and summary of ``audit wildcat`` (``finetune.wildcat.comparison``) and its PDF page."""

from __future__ import annotations

from pathlib import Path

import pytest
from pypdf import PdfReader

from audit.finetune.wildcat.comparison import POST_HOC, summary, table
from audit.report.wildcat_page import table_rows, write_wildcat_page


def audited(auc: float, methods: dict[str, tuple]) -> dict:
    """A results.json as ``run_audit`` writes it, reduced to what the table reads."""
    return {"performance": {"auc": auc}, "methods": {
        name: {"region": {"auprc": {"mean": utility}, "iou": {"mean": iou},
                          "pointwise_detection": {"map": pointwise, "images": 8, "positives": 4, "hits": 2}}}
        for name, (utility, pointwise, iou) in methods.items()}}


def results() -> dict:
    base = audited(0.95, {m: (0.1 * (i + 1), 0.5, 0.05 * i) for i, m in enumerate(POST_HOC)})
    for tied in ("grad-cam", "guided-grad-cam"):  # a tie: the first in the paper's order wins
        base["methods"][tied]["region"]["auprc"]["mean"] = 0.7
    return {"base": base, "wildcat": audited(0.94, {"wildcat": (0.75, 0.6, 0.3)})}


def test_rows_follow_the_papers_order_with_the_audits_numbers() -> None:
    rows = table(results())
    assert [(r["method"], r["model"]) for r in rows] == [*[(m, "base") for m in POST_HOC], ("wildcat", "wildcat")]
    assert rows[2] == {"method": "integrated-gradients", "model": "base", "classification_auc": 0.95,
                       "localisation_utility": pytest.approx(0.3), "pointwise_map": 0.5, "iou": pytest.approx(0.1)}
    assert rows[-1]["classification_auc"] == 0.94 and rows[-1]["localisation_utility"] == 0.75


def test_summary_against_the_base_auc_and_the_best_post_hoc_method() -> None:
    block = summary(table(results()))
    assert block["best_post_hoc"] == "grad-cam" and block["best_post_hoc_utility"] == 0.7  # 0.7 twice: grad-cam first
    assert block["auc_difference"] == pytest.approx(-0.01) and block["utility_difference"] == pytest.approx(0.05)
    assert block["sentence"] == ("WILDCAT: test AUROC 0.940 against 0.950 for the base model (-0.010); localisation "
                                 "utility 0.750 against 0.700 for the best post-hoc method, grad-cam (+0.050).")


def test_summary_without_region_masks_says_so() -> None:
    rows = table({"base": audited(0.9, {m: (None, None, None) for m in POST_HOC}),
                  "wildcat": audited(0.9, {"wildcat": (None, None, None)})})
    block = summary(rows)
    assert block["best_post_hoc"] is None and block["utility_difference"] is None
    assert "no post-hoc method has one" in block["sentence"]


def test_page_has_table_1s_blocks_ours_beside_the_papers(tmp_path: Path) -> None:
    rows = table(results())
    lines, bold = table_rows(rows)
    assert lines[1] == ["Classification AUC", "Baseline", "0.950", "98.39"]
    assert lines[2] == ["", "Modified", "0.940", "98.77"]
    utility = [line for line in lines if line[1].startswith("Modified (wildcat)")]
    assert [line[2:] for line in utility] == [["0.600", "38.75"], ["0.750", "48.04"], ["0.300", "–"]]
    assert [lines[i][1] for i in bold] == ["Modified (wildcat)"]  # the best localisation utility
    document = {
        "model": {"path": "/models/small.onnx"},
        "data": {"train_images": 10, "valid_images": 4, "test_images": 8},
        "wildcat": {"options": {"maps": 4, "k_max": 0.2, "k_min": 0.0, "alpha": 0.7, "lr": 1e-3, "batch_size": 64,
                                "epochs": 30, "patience": 10, "freeze_features": False},
                    "cut": {"layer": "layers.3", "shape": [32, 2, 2]}, "target": "predicted",
                    "training": {"epochs": 2, "best_epoch": 1,
                                 "history": [{"epoch": 1, "train_loss": 0.7, "valid_loss": 0.6},
                                             {"epoch": 2, "train_loss": 0.5, "valid_loss": 0.65}]},
                    "table": rows, "summary": summary(rows)},
    }
    text = PdfReader(write_wildcat_page(document, tmp_path / "page.pdf")).pages[0].extract_text()
    for expected in ("audit wildcat: small.onnx", "layers.3", "GGCAM (guided-grad-cam)", "44.76", "48.04", "Pointwise detection",
                     "the best post-hoc method, grad-cam"):
        assert expected in text, expected
