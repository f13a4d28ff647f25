"""Counterfactuals on the synthetic data: the biased model's latentshift-max map sits on the box,
the prediction falls by the requested amount, maps by hand, the saliency methods and the CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from torch import nn

from audit.cli.main import main
from audit.counterfactual.explain import REACHED, UNCHANGED, ShiftOptions, explain_batch
from audit.counterfactual.maps import MAPS
from audit.counterfactual.search import rule
from audit.data.synthetic import generate_split, make_synthetic
from audit.errors import AuditError
from audit.saliency import methods
from tests.counterfactual.conftest import SAMPLES

FAST = ShiftOptions(rule=rule("paper", bound=300))


@pytest.fixture(scope="module")
def held():
    return generate_split("train", 12, seed=11)  # the training box logic: the biased model is right


def box_mass(maps: np.ndarray, artefact: np.ndarray) -> float:
    return float(((maps * artefact).sum((1, 2)) / maps.sum((1, 2))).mean())


def test_biased_model_map_puts_clearly_more_mass_on_the_box(autoencoder, classifiers, held):
    x = torch.from_numpy(held.images[:, None])
    mass = {name: box_mass(explain_batch(model, autoencoder, x, options=FAST, maps=("max",)).maps["max"], held.artefact)
            for name, model in classifiers.items()}
    # The box is 6 of 784 pixels (0.8 %); measured: biased 0.45, unbiased 0.06.
    assert mass["biased"] > 0.25 and mass["biased"] > 4 * mass["unbiased"]


def test_prediction_falls_by_the_requested_amount(autoencoder, classifiers, held):
    options = ShiftOptions(rule=rule("paper", drop=0.5, floor=0.0, bound=300))
    e = explain_batch(classifiers["biased"], autoencoder, torch.from_numpy(held.images[:, None]), options=options)
    reached = np.array([s == REACHED for s in e.status])
    assert reached.sum() >= len(reached) // 3
    assert (e.p_end[reached] < e.p_start[reached] - 0.5).all()
    assert (e.lambdas[:, e.zero] == 0).all() and (np.diff(e.lambdas, axis=1) >= 0).all()
    assert np.allclose(e.predictions[:, e.zero], e.p_start, atol=1e-6)
    assert e.frames.shape == (12, options.frame_count, 1, 28, 28)
    assert e.p_original.shape == e.class_reconstruction.shape == (12,)


def test_maps_by_hand():
    # one image, frames at λ = -2, -1, 0 (zero = 2), one pixel each with values 0.0, 0.5, 0.2
    frames = np.array([0.0, 0.5, 0.2], np.float32).reshape(1, 3, 1, 1, 1)
    got = {name: float(fn(frames, 2)[0, 0, 0]) for name, fn in MAPS.items()}
    assert got == pytest.approx({"max": 0.3, "mean": (0.2 + 0.3 + 0.0) / 3, "minmax": 0.2, "sliding": (0.5 + 0.3) / 2})


def test_default_batch_size_keeps_a_batch_of_frames_within_256_mib():
    paper = ShiftOptions(rule=rule("paper"))  # 10 + 3 frames
    assert paper.batch_size((1, 28, 28)) == 128  # 256 MiB // (13 · 784 · 4 B) = 6584, capped
    assert paper.batch_size((3, 224, 224)) == 34  # 268435456 // (13 · 150528 · 4) = 34.3
    assert ShiftOptions(rule=rule("public")).batch_size((3, 224, 224)) == 44  # 10 frames: 44.6
    assert paper.batch_size((3, 2048, 2048)) == 1


class Blind(nn.Module):
    """An autoencoder whose decoder ignores the code: no shift can change the prediction."""

    def __init__(self, image: torch.Tensor) -> None:
        super().__init__()
        self.image = image
        self.scale = nn.Parameter(torch.ones(1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :4] * self.scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.image.expand(len(z), -1, -1, -1) + 0 * z.sum()


def test_a_search_that_never_changes_the_prediction_is_reported(classifiers, held):
    x = torch.from_numpy(held.images[:2, None])
    e = explain_batch(classifiers["unbiased"], Blind(x[:1]), x, options=ShiftOptions(rule=rule("public", bound=20)))
    assert e.status == [UNCHANGED, UNCHANGED] and e.reason_low == ["bound", "bound"]
    assert all((m == 0).all() for m in e.maps.values())


def test_latentshift_methods_are_registered_and_match_explain(trained_autoencoder, autoencoder, classifiers, held):
    model = classifiers["biased"]
    x = model.spec.to_tensor(held.images[:4, :, :, None])
    target = torch.tensor(held.labels[:4])
    for name in ("latentshift-max", "latentshift-mean", "latentshift-minmax", "latentshift-sliding"):
        maps = methods.get(name)(autoencoder=str(trained_autoencoder), bound=100).attribute(model, x, target)
        assert maps.shape == (4, 28, 28) and maps.dtype == np.float32 and (maps >= 0).all()
    expected = explain_batch(model, autoencoder, torch.from_numpy(held.images[:4, None]), target, ShiftOptions(rule=rule("paper", bound=100)))
    assert np.allclose(maps, expected.maps["sliding"], atol=1e-6)
    with pytest.raises(AuditError, match="latentshift-max.autoencoder=AE.pt"):
        methods.get("latentshift-max")()


def test_counterfactual_command_and_audit_run(tmp_path, trained_autoencoder, capsys):
    data = make_synthetic(tmp_path / "data", seed=5, n_train=4, n_valid=2, n_test=2) / "train"
    model = "sample_models/biased.onnx"
    out = tmp_path / "cf"
    code = main(["counterfactual", model, "--autoencoder", str(trained_autoencoder), "--data", str(data / "images"),
                 "--out", str(out), "--bound", "100", "--quiet"])
    assert code == 0
    rows = list(csv.DictReader((out / "counterfactuals.csv").open()))
    assert len(rows) == 4 and {r["status"] for r in rows} <= {"reached", "partial", "unchanged"}
    first = rows[0]["path"].removesuffix(".png")
    for path in (f"gifs/{first}.gif", f"strips/{first}.png", f"maps/{first}.max.npy", f"maps/{first}.sliding.npy"):
        assert (out / path).is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reconstruction"]["accuracy_original"] == 1.0 and summary["data"]["images"] == 4
    run = tmp_path / "run"
    code = main(["run", model, "--data", str(data / "images"), "--masks", str(data / "artefacts"), "--method", "latentshift-max",
                 "--option", f"latentshift-max.autoencoder={trained_autoencoder}", "--option", "latentshift-max.bound=100",
                 "--randomization-images", "0", "--out", str(run), "--quiet"])
    assert code == 0 and "latentshift-max" in json.loads((run / "results.json").read_text())["methods"]


def test_bad_autoencoder_is_one_line_exit_2(tmp_path, capsys):
    data = make_synthetic(tmp_path / "data", seed=5, n_train=2, n_valid=2, n_test=2) / "train" / "images"
    pickled = tmp_path / "ae.pt"
    torch.save(nn.Linear(2, 2), pickled)
    out = tmp_path / "cf"
    code = main(["counterfactual", "sample_models/biased.onnx", "--autoencoder", str(pickled), "--data", str(data), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "pickled" in err and not out.exists()


def test_counterfactual_target_by_the_run_s_rule(tmp_path, capsys):
    data = make_synthetic(tmp_path / "data", seed=5, n_train=2, n_valid=2, n_test=2) / "train" / "images"
    ae = str(SAMPLES / "autoencoder.pt")
    bad = tmp_path / "bad"
    code = main(["counterfactual", "sample_models/biased.onnx", "--autoencoder", ae, "--data", str(data), "--out", str(bad), "--target", "2"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == "audit: error: --target '2': use predicted, label or a class index 0..1" and not bad.exists()
    out = tmp_path / "cf"
    code = main(["counterfactual", "sample_models/biased.onnx", "--autoencoder", ae, "--data", str(data), "--out", str(out),
                 "--target", "1", "--bound", "20", "--quiet", "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out) == json.loads((out / "summary.json").read_text())
    assert [row["target"] for row in csv.DictReader((out / "counterfactuals.csv").open())] == ["1", "1"]
    assert json.loads((out / "summary.json").read_text())["target"] == {"option": "1", "rule": "class 1 (1-two-crosses) for every image"}
