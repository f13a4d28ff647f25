"""``audit wildcat`` on a base model that cannot run every post-hoc method of Table 1: a
torch.export .pt2 keeps no ``nn.ReLU`` module, so guided backprop and guided Grad-CAM cannot
run on it; they are left out before training (their rows null with the reason) instead of
failing the comparison after training."""

from __future__ import annotations

from pathlib import Path

from audit.finetune.wildcat.comparison import NEEDS_RELU, POST_HOC, runnable, summary, table
from audit.models.loader import ModelOptions, load_classifier
from tests.conftest import TinyCNN
from tests.finetune.zoo import export


def _audited(auc: float, methods: dict[str, float]) -> dict:
    return {"performance": {"auc": auc}, "methods": {
        name: {"region": {"auprc": {"mean": u}, "iou": {"mean": u / 2}, "pointwise_detection": {"map": u / 3}}}
        for name, u in methods.items()}}


def test_a_pt2_cannot_run_the_guided_methods_an_onnx_can(tmp_path: Path) -> None:
    options = ModelOptions(input_size=(28, 28), channels=1)
    pt2 = load_classifier(export(TinyCNN(), tmp_path / "tiny.pt2", "torch.export"), options)
    onnx = load_classifier(export(TinyCNN(), tmp_path / "tiny.onnx", "onnx-folded"), options)
    left_out = runnable(pt2)
    assert tuple(left_out) == NEEDS_RELU == ("guided-backprop", "guided-grad-cam")
    assert all("needs nn.ReLU modules" in why and "tiny.pt2" in why for why in left_out.values())
    assert runnable(onnx) == {}


def test_left_out_rows_keep_the_layout_with_the_reason() -> None:
    ran = [m for m in POST_HOC if m not in NEEDS_RELU]
    results = {"base": _audited(0.9, {m: 0.1 * (i + 1) for i, m in enumerate(ran)}),
               "wildcat": _audited(0.8, {"wildcat": 0.3})}
    left_out = {m: f"{m} cannot run" for m in NEEDS_RELU}
    rows = table(results, left_out)
    assert [r["method"] for r in rows] == [*POST_HOC, "wildcat"]
    gbp = rows[POST_HOC.index("guided-backprop")]
    assert gbp == {"method": "guided-backprop", "model": "base", "classification_auc": 0.9, "localisation_utility": None,
                   "pointwise_map": None, "iou": None, "reason": "guided-backprop cannot run"}
    assert "reason" not in rows[0] and "reason" not in rows[-1]
    block = summary(rows)
    assert block["best_post_hoc"] == "grad-cam" and abs(block["best_post_hoc_utility"] - 0.5) < 1e-12
