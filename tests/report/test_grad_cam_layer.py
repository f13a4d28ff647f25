"""Which layer Grad-CAM used is in results.json and in the PDF's appendix."""

from __future__ import annotations

from tests.report.conftest import Report


def test_grad_cam_layer_in_results_and_report(report: Report) -> None:
    layer = {"name": "layers.3", "shape": [32, 2, 2], "default": True, "eager_output": "layers.3", "absorbed_batchnorm": False}
    assert report.results["methods"]["grad-cam"]["layer"] == layer
    assert "layer" not in report.results["methods"]["gradient"]
    assert ("grad-cam maps are taken at layer layers.3, a 32 × 2 × 2 (channels × height × width) feature map, "
            "the default: the input of the global pooling that feeds the classifier head.") in report.text


def test_the_appendix_says_when_the_layer_holds_tokens_or_a_folded_batchnorm() -> None:
    from reportlab.platypus import Paragraph

    from audit.report.pdf.appendix import _layers

    results = {"methods": {
        "grad-cam": {"layer": {"name": "blocks.1.norm1", "shape": [16, 4, 4], "default": True, "layout": "tokens",
                               "extra_tokens": 1, "eager_output": "blocks.1.norm1", "absorbed_batchnorm": False}},
        "guided-grad-cam": {"layer": {"name": "layer4.1.conv2", "shape": [8, 2, 2], "default": False,
                                      "eager_output": "the BatchNorm that follows layer4.1.conv2 in the original code",
                                      "absorbed_batchnorm": True}}}}
    tokens, folded = (p.getPlainText() for p in _layers(results) if isinstance(p, Paragraph))
    assert "its tokens on the patch grid (1 class/distillation token(s) dropped)" in tokens
    assert "the last block's normalised tokens before its attention" in tokens
    assert folded.endswith("An exporter folded a BatchNorm into this layer: its output is that of the BatchNorm "
                           "that follows layer4.1.conv2 in the original code.")
