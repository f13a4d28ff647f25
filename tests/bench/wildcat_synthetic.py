"""The README's WILDCAT table on the synthetic crosses: ``audit wildcat`` on the unbiased sample
model (cut 2×2, scored against the cross pixels) and on LocalCNN (cut 28×28, a 7-pixel receptive
field; scored against the crosses' bounding boxes, explaining the positive class "two crosses").

Both on ``make-synthetic --box random --seed 0`` (the box tells nothing about the class).
LocalCNN is trained here as the sample models are (``sample_models.train.fit``: Adam, lr 1e-3,
batch 32, seed 0, until train AUC ≥ 0.999). The boxes are the bounding boxes of the 8-connected
components of each test region mask, written as a ``--regions`` boxes CSV.

Usage: python tests/bench/wildcat_synthetic.py [--out bench-out/wildcat-synthetic]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from scipy import ndimage
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


class LocalCNN(nn.Module):
    """Three 3×3 conv-BN-ReLU layers at full resolution (receptive field 7 pixels), global average pool, linear."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for cin, cout in ((1, width), (width, width), (width, 2 * width)):
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def write_boxes(split: Path, path: Path) -> int:
    """One row per cross: the bounding box of each 8-connected component of the region masks."""
    rows = 0
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "x", "y", "width", "height"])
        for mask in sorted((split / "regions").rglob("*.png")):
            labelled, _ = ndimage.label(iio.imread(mask) > 0, structure=np.ones((3, 3)))
            for rows_, cols in ndimage.find_objects(labelled):
                writer.writerow([mask.relative_to(split / "regions").as_posix(), cols.start, rows_.start,
                                 cols.stop - cols.start, rows_.stop - rows_.start])
                rows += 1
    return rows


def main() -> None:
    from audit.cli.main import main as audit
    from audit.data.synthetic import generate_split, make_synthetic
    from sample_models.train import export, fit, one_thread

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "wildcat-synthetic")
    args = parser.parse_args()
    data = args.out / "data"
    if not data.exists():
        make_synthetic(data, seed=0, box="random")
    boxes = args.out / "test_boxes.csv"
    write_boxes(data / "test", boxes)
    model = args.out / "local.onnx"
    if not model.exists():
        with one_thread():
            torch.manual_seed(0)
            network = LocalCNN()
            fit(network, generate_split("train", 500, seed=0, box="random"), seed=0, lr=1e-3, batch_size=32,
                min_epochs=20, max_epochs=60, done=lambda s: s.auc >= 0.999 and s.accuracy >= 0.99)
            export(network.eval(), args.out, "local")
    common = ["--data", data / "train" / "images", "--valid", data / "valid" / "images", "--test", data / "test" / "images",
              "--randomization-images", "0", "--quiet"]
    runs = {"unbiased": [ROOT / "sample_models" / "unbiased.onnx", "--test-regions", data / "test" / "regions"],
            "local": [model, "--test-regions", boxes, "--target", "1"]}
    table = {}
    for name, extra in runs.items():
        code = audit(["wildcat", *map(str, extra), *map(str, common), "--out", str(args.out / name)])
        if code:
            raise SystemExit(code)
        table[name] = json.loads((args.out / name / "results.json").read_text())["wildcat"]["table"]
    print(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
