"""Constant saliency maps on valid input: a real model whose Grad-CAM layer is a dead ReLU.

The last convolution's bias is -1000, so its ReLU is never active and every Grad-CAM (and
guided Grad-CAM) map is all zero, while a linear path from the pixels keeps the model working
(the other methods' maps are real). Audited through ``audit run`` as ONNX with every registered
saliency method (but attention rollout and its kin, which need a transformer), and as TorchScript (a second route to the layer: the in-memory ONNX twin) with
the two Grad-CAMs and the gradient: each run succeeds, metrics undefined for a
constant map are null with a reason (empty in per_image.csv), the defined ones equal an
independent computation (masks read with skimage, AUPRC with sklearn, predictions from the torch
module), and the report, ``audit report``, ``audit compare`` and the gate read the results.
"""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from pypdf import PdfReader
from skimage.io import imread
from sklearn.metrics import average_precision_score
from torch import nn

from audit.cli.main import main
from audit.saliency.attention_rollout import AttentionMethod
from audit.saliency.base import methods
from audit.saliency.wildcat import Wildcat
from tests.conftest import export_onnx

SAMPLE_MODELS = Path(__file__).resolve().parents[2] / "sample_models"
CONSTANT = ("grad-cam", "guided-grad-cam")
IMAGES = 8
CHECKED = 3  # --randomization-images
CHEAP = ("smoothgrad.samples=4", "smoothgrad-ig.samples=2", "smoothgrad-ig.n_steps=4", "integrated-gradients.n_steps=8",
         "rise.masks=64", *(f"latentshift-{m}.bound=100" for m in ("max", "mean", "minmax", "sliding")))


class DeadCam(nn.Module):
    """Conv-ReLU-Conv(bias −1000)-ReLU-pool-Linear, plus a linear path from the pixels to the logits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(8, 2)
        self.pixels = nn.Linear(28 * 28, 2)
        with torch.no_grad():
            self.features[2].bias.fill_(-1000.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3))) + self.pixels(x.flatten(1))


def every_method() -> list[str]:
    """Every registered method but those for transformers' attention and class maps (this model has neither)."""
    names = [name for name in methods.names() if not issubclass(methods.get(name), (AttentionMethod, Wildcat))]
    assert set(CONSTANT) | {"gradient", "occlusion", "latentshift-max"} <= set(names)
    return names


def audited(fmt: str) -> list[str]:
    return every_method() if fmt == "onnx" else ["gradient", *CONSTANT]


def cheap(names: list[str]) -> list[str]:
    """Options that cut the work of the methods in ``names``, not their code: fewer samples, steps
    and masks, and Latent Shift's λ search bounded at 100 (10 steps) instead of 1000."""
    return [a for option in CHEAP if option.split(".")[0] in names for a in ("-o", option)]


@pytest.fixture(scope="module")
def runs(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The dataset (4 images per class, with masks), the module, and one run per model format."""
    root = tmp_path_factory.mktemp("dead-cam")
    valid = synthetic_root / "valid"
    paths = [p.relative_to(valid / "images") for folder in sorted((valid / "images").iterdir())
             for p in sorted(folder.glob("*.png"))[:IMAGES // 2]]
    for kind in ("images", "artefacts", "regions"):
        for rel in paths:
            (root / kind / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(valid / kind / rel, root / kind / rel)
    torch.manual_seed(0)
    module = DeadCam().eval()
    models = {"onnx": export_onnx(module, root / "dead.onnx"), "torchscript": root / "dead.pt"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(module).save(str(models["torchscript"]))
    results: dict[str, Any] = {"root": root, "module": module, "paths": [p.as_posix() for p in paths], "out": {}, "code": {}}
    for fmt, model in models.items():
        out = root / f"out-{fmt}"
        args = ["run", model, "--data", root / "images", "--masks", root / "artefacts", "--regions", root / "regions",
                "--out", out, "--quiet", "--randomization-images", CHECKED, "--autoencoder", SAMPLE_MODELS / "autoencoder.pt",
                *cheap(audited(fmt)), *[a for name in audited(fmt) for a in ("--method", name)]]
        if fmt == "torchscript":
            args += ["--input-size", "28", "28", "--channels", "1"]
        results["code"][fmt] = main([str(a) for a in args])
        results["out"][fmt] = out
    return results


def results_of(runs: dict[str, Any], fmt: str) -> dict[str, Any]:
    def no_nan(token: str) -> None:
        raise AssertionError(f"results.json holds {token}")

    return json.loads((runs["out"][fmt] / "results.json").read_text(), parse_constant=no_nan)


def nulls_without_reason(block: Any, where: str = "") -> list[str]:
    """Keys whose value is null with neither "reason" nor "<key>_reason" beside them (a null
    inside an interval pair counts for the pair)."""
    found: list[str] = []
    if isinstance(block, dict):
        reasons = [k.removesuffix("reason").rstrip("_") for k in block if k.endswith("reason")]
        for key, value in block.items():
            explained = any(key.startswith(prefix) for prefix in reasons)  # "reason", or kendall_reason for kendall_tau
            if value is None and not explained:
                found.append(f"{where}.{key}")
            elif isinstance(value, (dict, list)):
                found += nulls_without_reason(value, f"{where}.{key}")
    elif isinstance(block, list):
        for i, value in enumerate(block):
            if isinstance(value, (dict, list)):
                found += nulls_without_reason(value, f"{where}.{i}")
    return found


def masks(runs: dict[str, Any], kind: str) -> np.ndarray:
    return np.stack([imread(runs["root"] / kind / p) > 0 for p in runs["paths"]])


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_every_method_runs_and_everything_is_written(runs, fmt) -> None:
    assert runs["code"][fmt] == 0
    out = runs["out"][fmt]
    results = results_of(runs, fmt)
    assert list(results["methods"]) == audited(fmt)
    assert results["data"]["images"] == IMAGES == len(pd.read_csv(out / "per_image.csv"))
    for name in CONSTANT:
        assert results["methods"][name]["layer"]["name"] == "features.3"  # the dead ReLU, by default
    assert len(PdfReader(out / "report.pdf").pages) >= 2


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("name", CONSTANT)
def test_metrics_undefined_for_a_constant_map_are_null_with_their_reason(runs, fmt, name) -> None:
    method = results_of(runs, fmt)["methods"][name]
    assert nulls_without_reason(method) == []
    artefact = method["artefact"]
    assert artefact["enrichment"]["overall"] is None and "zero map: 8" in artefact["enrichment"]["reason"]
    assert artefact["enrichment"]["pooled"] is None and artefact["enrichment"]["pooled_reason"]
    assert artefact["mean_saliency"]["overall"] is None and "same value" in artefact["mean_saliency"]["reason"]
    region = method["region"]["relevance_mass"]
    assert region["mean"] is None and "without positive saliency: 8" in region["reason"]
    assert method["aurrac"]["kendall_tau"] is None and "flat curve" in method["aurrac"]["kendall_reason"]
    versus = method["saliency_vs_ablation"]
    assert versus["spearman"] is None and versus["skipped"] == IMAGES and "all-zero map" in versus["reason"]
    randomization = method["randomization"]
    assert randomization["constant_original"] == randomization["images"] == CHECKED
    for step in randomization["cascading"] + randomization["independent"]:
        assert step["spearman"] is None and step["ci95"] is None and step["constant_maps"] == CHECKED
        assert "constant map" in step["reason"]
    sanity = method["sanity"]
    assert sanity["status"] == "not run" and "constant on all 3 checked" in sanity["reason"]
    assert "--randomization-images" not in sanity["reason"]  # more images would not help
    table = pd.read_csv(runs["out"][fmt] / "per_image.csv")
    for column in ("artefact_enrichment", "artefact_mean_saliency_z", "region_relevance_mass"):
        assert table[f"{name}.{column}"].isna().all(), column


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_metrics_defined_for_a_constant_map_match_an_independent_computation(runs, fmt) -> None:
    results = results_of(runs, fmt)
    table = pd.read_csv(runs["out"][fmt] / "per_image.csv")
    assert table.path.tolist() == runs["paths"]
    artefact, region = masks(runs, "artefacts"), masks(runs, "regions")
    pixels = artefact[0].size
    area, l = artefact.sum(axis=(1, 2)) / pixels, region.sum(axis=(1, 2)) / pixels
    # a constant map: every pixel tied, so the top-k rules give chance (README, "Top-k with ties")
    auprc = [average_precision_score(r.ravel(), np.zeros(pixels)) for r in region]
    images = np.stack([imread(runs["root"] / "images" / p) / 255.0 for p in runs["paths"]]).astype(np.float32)
    with torch.no_grad():
        predictions = runs["module"](torch.from_numpy(images)[:, None]).argmax(dim=1).numpy()
    accuracy = float(np.mean(predictions == table.label.to_numpy()))
    assert table.prediction.tolist() == predictions.tolist()
    for name in CONSTANT:
        method = results["methods"][name]
        np.testing.assert_allclose(table[f"{name}.artefact_peak_share"], area, rtol=1e-12)
        np.testing.assert_allclose(table[f"{name}.region_iop"], l, rtol=1e-12)
        np.testing.assert_allclose(table[f"{name}.region_iou"], l / (2 - l), rtol=1e-12)
        np.testing.assert_allclose(table[f"{name}.region_auprc"], auprc, rtol=1e-12)
        np.testing.assert_allclose(table[f"{name}.region_pointing_game"], l, rtol=1e-12)
        assert method["artefact"]["peak_share"]["overall"] == pytest.approx(area.mean(), rel=1e-12)
        assert method["artefact"]["mean_saliency"]["raw"]["overall"] == 0.0
        assert method["region"]["iou"]["mean"] == pytest.approx(np.mean(l / (2 - l)), rel=1e-12)
        assert method["region"]["auprc"]["mean"] == pytest.approx(np.mean(auprc), rel=1e-12)
        # every image tied on its saliency: a flat curve at the plain accuracy
        assert method["aurrac"]["value"] == method["aurrac"]["accuracy"] == pytest.approx(accuracy)
        assert method["aurrac"]["difference"] == 0.0
    # the run's other methods are computed as usual: the gradient's enrichment against autograd
    x = torch.from_numpy(images)[:, None].requires_grad_(True)
    logits = runs["module"](x)
    (gradient,) = torch.autograd.grad(logits.gather(1, torch.from_numpy(predictions)[:, None]).sum(), x)
    g = gradient.abs()[:, 0].numpy().astype(np.float64)
    enrichment = (g * artefact).sum(axis=(1, 2)) / g.sum(axis=(1, 2)) / area
    np.testing.assert_allclose(table["gradient.artefact_enrichment"], enrichment, rtol=1e-3)
    assert results["methods"]["gradient"]["artefact"]["enrichment"]["overall"] == pytest.approx(enrichment.mean(), rel=1e-3)


def test_report_compare_and_gate_read_results_with_constant_maps(runs, capsys) -> None:
    onnx_out, script_out = runs["out"]["onnx"], runs["out"]["torchscript"]
    text = " ".join(page.extract_text() for page in PdfReader(onnx_out / "report.pdf").pages)
    assert "guided-grad-cam" in text and not any(word in {"nan", "NaN", "None"} for word in text.split())
    pdf = script_out / "again.pdf"
    assert main(["report", str(script_out), "--out", str(pdf)]) == 0
    assert len(PdfReader(pdf).pages) >= 2
    compare = ["compare", str(onnx_out), str(script_out)]
    assert main(compare) == 0
    capsys.readouterr()
    gate = ["--fail-on", "methods.grad-cam.artefact.enrichment.overall > 2"]
    assert main([*compare, *gate, "--json"]) == 1  # a check on a null fails unless --allow-missing
    check = json.loads(capsys.readouterr().out)["gate"]["checks"][0]
    assert check["outcome"] == "fail" and "zero map: 8" in check["reason"]
    assert main([*compare, *gate, "--allow-missing"]) == 0
    capsys.readouterr()


def test_a_constant_map_is_not_nan_anywhere_in_the_summaries(runs) -> None:
    """Every number in results.json is finite (JSON has no NaN; parse_constant would raise)."""
    def numbers(block: Any) -> list[float]:
        if isinstance(block, dict):
            return [n for v in block.values() for n in numbers(v)]
        if isinstance(block, list):
            return [n for v in block for n in numbers(v)]
        return [block] if isinstance(block, float) else []

    for fmt in ("onnx", "torchscript"):
        assert all(math.isfinite(n) for n in numbers(results_of(runs, fmt)))
