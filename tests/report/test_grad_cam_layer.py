"""Which layer Grad-CAM used is in results.json and in the PDF's appendix."""

from __future__ import annotations

from tests.report.conftest import Report


def test_grad_cam_layer_in_results_and_report(report: Report) -> None:
    layer = {"name": "layers.3", "shape": [32, 2, 2], "default": True, "eager_output": "layers.3", "absorbed_batchnorm": False}
    assert report.results["methods"]["grad-cam"]["layer"] == layer
    assert "layer" not in report.results["methods"]["gradient"]
    assert ("grad-cam maps are taken at layer layers.3, a 32 × 2 × 2 (channels × height × width) feature map, "
            "the default: the input of the global pooling that feeds the classifier head.") in report.text
