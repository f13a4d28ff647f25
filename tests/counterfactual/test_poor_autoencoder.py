"""A poor autoencoder is said, with the rate, in the terminal (audit counterfactual) and on the
strips page (audit run with a Latent Shift method)."""

from __future__ import annotations

import json

import numpy as np
import torch

from audit.cli.main import main
from audit.counterfactual.training import TrainConfig, train_autoencoder
from audit.data.synthetic import make_synthetic
from audit.report.pdf.fig_counterfactuals import reconstruction_changes


def test_the_strips_page_warns_when_the_reconstruction_moves_p() -> None:
    strips = {"p_original": np.array([0.9, 0.8, 0.7, 0.95]),
              "predictions": np.array([[0.85, 0.1], [0.2, 0.1], [0.69, 0.3], [0.1, 0.05]])}  # rows 1 and 3 moved > 0.25
    line = reconstruction_changes(strips)
    assert line.startswith("Warning: the autoencoder's reconstruction alone moves p by more than 0.25 on 2 of 4 images (50%)")
    strips["predictions"][[1, 3], 0] = strips["p_original"][[1, 3]] - 0.2
    assert reconstruction_changes(strips) is None


def test_audit_counterfactual_warns_with_the_rate_of_changed_predictions(tmp_path, capsys) -> None:
    torch.set_num_threads(1)
    root = make_synthetic(tmp_path / "data", seed=3, n_train=16, n_valid=2, n_test=2)
    ae = tmp_path / "poor.pt"  # one epoch on 16 images: its reconstructions are blurs
    train_autoencoder(root / "train" / "images", ae, TrainConfig(epochs=1, seed=0, batch_size=8, bottleneck=2), progress=False)
    out = tmp_path / "cf"
    code = main(["counterfactual", "sample_models/biased.onnx", "--autoencoder", str(ae), "--data", str(root / "train" / "images"),
                 "--out", str(out), "--bound", "10", "--quiet"])
    err = capsys.readouterr().err
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    rows = [line.split(",") for line in (out / "counterfactuals.csv").read_text().splitlines()]
    header = rows[0]
    changed = np.mean([r[header.index("class_original")] != r[header.index("class_reconstruction")] for r in rows[1:]])
    assert summary["reconstruction"]["changed_predictions"] == changed
    assert changed > 0.1  # the premise: this autoencoder is poor (0.5 measured)
    assert f"change the prediction of {changed:.0%} of the images" in " ".join(err.split())
