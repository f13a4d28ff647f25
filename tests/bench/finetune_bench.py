"""Time per epoch of fine-tuning losses against plain training of the same model on the same
batches, as ratios measured in one process (goal: actdiff ≤ 2.2×, since it needs a second
forward pass over the masked images).

The baseline is a bare Adam step on the cross-entropy of the differentiable model. Each loss
runs the training loop's step: the loss (with x_masked, the permutation, when it uses it),
backward, Adam. Epochs are
interleaved and the best of ``--repeats`` is kept for each.

Usage: python tests/bench/finetune_bench.py [--images 500] [--model sample_models/biased.onnx]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

LOSSES = ("none", "actdiff", "gradmask", "actdiff+gradmask", "classify-masked")


def batches(args: argparse.Namespace, classifier) -> list[tuple]:
    from audit.data.dataset import open_dataset
    from audit.data.synthetic import make_synthetic
    from audit.finetune.masking import scrambled_pixels

    root = args.cache / f"finetune-{args.images}"
    if not root.exists():
        make_synthetic(root, seed=1, n_train=args.images, n_valid=2, n_test=2)
    dataset = open_dataset(root / "train" / "images", size=(28, 28), channels=1, regions=root / "train" / "regions", mask_blur=0.5)
    out = []
    for batch in dataset.batches(args.batch_size):
        scrambled, has_mask = scrambled_pixels(batch, "regions")
        out.append((classifier.spec.to_tensor(batch.images), torch.from_numpy(batch.labels), scrambled, has_mask))
    return out


def plain_epoch(model: torch.nn.Module, data: list[tuple]) -> float:
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for x, y, _, _ in data:
        optimiser.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimiser.step()
    return time.perf_counter() - start


def loss_epoch(model: torch.nn.Module, name: str, data: list[tuple]) -> float:
    from audit.finetune.layers import LayerTaps
    from audit.finetune.losses import Step, losses

    loss, taps = losses.get(name), LayerTaps(model, ["features"])
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for x, y, scrambled, has_mask in data:
        step = Step(model, x, y, scrambled, has_mask, taps, 1.0, 10.0, generator)
        optimiser.zero_grad(set_to_none=True)
        loss(step)["total"].backward()
        optimiser.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--model", type=Path, default=ROOT / "sample_models" / "biased.onnx")
    parser.add_argument("--cache", type=Path, default=ROOT / "bench-out")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from audit.models.loader import load_classifier

    args.cache.mkdir(parents=True, exist_ok=True)
    classifier = load_classifier(args.model)
    data = batches(args, classifier)
    start = classifier.differentiable
    plain_epoch(copy.deepcopy(start), data[:2])  # warm-up
    times: dict[str, list[float]] = {"plain": [], **{name: [] for name in LOSSES}}
    for _ in range(args.repeats):
        times["plain"].append(plain_epoch(copy.deepcopy(start), data))
        for name in LOSSES:
            times[name].append(loss_epoch(copy.deepcopy(start), name, data))
    best = {name: min(values) for name, values in times.items()}
    report = {
        "images": sum(len(b[1]) for b in data),
        "threads": torch.get_num_threads(),
        "seconds_per_epoch": {name: round(value, 3) for name, value in best.items()},
        "ratio_to_plain": {name: round(best[name] / best["plain"], 2) for name in LOSSES},
        "goal": "actdiff <= 2.2",
    }
    print(json.dumps(report, indent=2))
    (args.cache / "finetune_bench.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
