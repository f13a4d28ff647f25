"""Stable ranking: per-image values do not depend on float32 tie-breaking or on the batch size.

Grad-CAM maps upsampled from a few pixels are full of exact ties; computed as torch does in
float32 the ties were broken at random, and differently at each batch size, so rank-based
values (AUPRC, top-p overlap, pointing game) moved with ``--batch-size``.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score

from audit.data.dataset import open_dataset
from audit.metrics.host_kernels import pointing_game_rows
from audit.metrics.localisation import average_precision
from audit.models.loader import load_classifier
from audit.pipeline import RunConfig, run_audit
from audit.saliency.grad_cam import upsample

SAMPLES = Path(__file__).resolve().parents[2] / "sample_models"
SIZE = 28


def exact_bilinear(cam: np.ndarray, size: int) -> list[list[Fraction]]:
    """Bilinear upsampling with half-pixel centres in exact rational arithmetic (the reference)."""
    def taps(source: int) -> list[tuple[int, int, Fraction]]:
        out = []
        for i in range(size):
            s = min(max((Fraction(2 * i + 1, 2) * source) / size - Fraction(1, 2), Fraction(0)), Fraction(source - 1))
            i0 = int(s)
            out.append((i0, min(i0 + 1, source - 1), s - i0))
        return out

    v = [[Fraction(float(value)) for value in row] for row in cam]
    rows, cols = taps(cam.shape[0]), taps(cam.shape[1])
    return [[(1 - wy) * ((1 - wx) * v[y0][x0] + wx * v[y0][x1]) + wy * ((1 - wx) * v[y1][x0] + wx * v[y1][x1])
             for x0, x1, wx in cols] for y0, y1, wy in rows]


@pytest.mark.parametrize("source, target", [((2, 2), (28, 28)), ((4, 4), (128, 128)), ((3, 5), (7, 224)), ((6, 4), (4, 3))])
def test_upsample_is_bilinear_interpolation(source, target):
    cam = torch.rand(3, 1, *source, generator=torch.Generator().manual_seed(0))
    expected = F.interpolate(cam.double(), target, mode="bilinear", align_corners=False)[:, 0]
    got = upsample(cam, target)
    assert got.dtype == torch.float32 and got.shape == (3, *target)
    np.testing.assert_allclose(got.double().numpy(), expected.numpy(), rtol=1.2e-7, atol=0)


def test_hand_made_ties_are_exact_and_scored_by_expected_value():
    """A 2×2 map whose maximum 0.75 sits bottom right, with two equal values 0.3 and a zero:
    upsampled to 28×28 every pixel equal in exact arithmetic (the 7×7 block of 0.75, the border
    strips, the stretch between the two 0.3) must be bit-equal, at both ulps of the source values."""
    cam = np.array([[0.3, 0.3], [0.0, 0.75]], dtype=np.float32)
    exact = exact_bilinear(cam, SIZE)
    groups: dict[Fraction, list[int]] = {}
    for index, value in enumerate(v for row in exact for v in row):
        groups.setdefault(value, []).append(index)
    assert len(groups) < 400 and len(groups[Fraction(0.75)]) == 49
    region = np.zeros((SIZE, SIZE), dtype=bool)
    region[14:, 24:] = True  # 28 of the 49 maximal pixels
    rounded = np.array([[float(v) for v in row] for row in exact]).astype(np.float32)  # 8 more ties
    assert np.array_equal(upsample(torch.from_numpy(cam)[None, None], (SIZE, SIZE))[0].numpy(), rounded)
    reference = average_precision_score(region.ravel(), rounded.ravel())  # a tie is one threshold
    for nudged in (cam, np.nextafter(cam, np.float32(1))):  # one ulp up: a batch size's rounding
        got = upsample(torch.from_numpy(nudged)[None, None], (SIZE, SIZE))[0].numpy()
        flat = got.ravel()
        for members in groups.values():
            assert len(set(flat[members].tolist())) == 1
        assert pointing_game_rows(flat[None], region.ravel()[None], np.sort(flat)[None])[0] == pytest.approx(28 / 49, abs=1e-15)
        assert average_precision(region, got) == pytest.approx(reference, abs=1e-12)


def test_per_image_values_do_not_depend_on_the_batch_size(synthetic_root, tmp_path):
    """The same 24 images at batch size 1 and 32: every per_image.csv column to 1e-6 (relative
    for the unbounded ones); the rank-based ones exactly. Before, grad-cam's region AUPRC of
    one image moved by 2.8e-5 and its peak share by up to 0.05."""
    torch.set_num_threads(1)
    valid = synthetic_root / "valid"
    classifier = load_classifier(SAMPLES / "biased.onnx")
    config = dict(methods=["gradient", "input-x-gradient", "integrated-gradients", "grad-cam", "guided-grad-cam", "occlusion"],
                  method_options={"integrated-gradients": {"n_steps": 8}}, randomization_images=0)
    tables = []
    for batch_size in (1, 32):
        dataset = open_dataset(valid / "images", size=(28, 28), channels=1, masks=valid / "artefacts", regions=valid / "regions")
        run_audit(classifier, dataset, RunConfig(batch_size=batch_size, **config), tmp_path / str(batch_size))
        tables.append(pd.read_csv(tmp_path / str(batch_size) / "per_image.csv").set_index("path"))
    one, batched = tables[0], tables[1].loc[tables[0].index]
    assert list(one.columns) == list(batched.columns) and len(one) == 24
    for column in one.columns:
        if one[column].dtype.kind in "fi":
            np.testing.assert_allclose(batched[column], one[column], rtol=1e-6, atol=1e-6, err_msg=column)
            if any(word in column for word in ("auprc", "iou", "iop", "iot", "pointing", "rank", "peak")):
                np.testing.assert_array_equal(batched[column], one[column], err_msg=column)
        else:
            assert batched[column].equals(one[column]), column
