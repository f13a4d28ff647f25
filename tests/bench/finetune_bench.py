"""Time per epoch of fine-tuning losses against plain training of the same model on the same
batches, as ratios measured in one process (goal: actdiff ≤ 2.2×, since it needs a second
forward pass over the masked images).

Every model trains as ``audit finetune`` trains it: in train mode (BatchNorm on batch
statistics), with BatchNorm inserted where the exporter folded it (``finetune.normalisation``).
Two routes: ``biased.onnx`` (the dynamo exporter folded BatchNorm: inserted again) and
``biased.pt`` (TorchScript: BatchNorm kept). The baseline is a bare Adam step on the
cross-entropy of that same trainable model. Each loss runs the training loop's step: the loss
(with x_masked, the permutation, when it uses it), backward, Adam. The variants are interleaved
batch by batch (the machine may be shared) and the best of ``--repeats`` epochs is kept.

Usage: python tests/bench/finetune_bench.py [--images 500] [--model sample_models/biased.onnx ...]
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


class Plain:
    """The baseline: a bare Adam step on the cross-entropy."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.optimiser = model.train(), torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(self, x: torch.Tensor, y: torch.Tensor, scrambled: torch.Tensor, has_mask: torch.Tensor) -> None:
        self.optimiser.zero_grad(set_to_none=True)
        F.cross_entropy(self.model(x), y).backward()
        self.optimiser.step()


class WithLoss(Plain):
    """The training loop's step with a registered loss."""

    def __init__(self, model: torch.nn.Module, name: str) -> None:
        from audit.finetune.layers import LayerTaps
        from audit.finetune.losses import losses
        from audit.finetune.normalisation import inner

        super().__init__(model)
        self.loss, self.taps = losses.get(name), LayerTaps(inner(model), ["features"])
        self.generator = torch.Generator().manual_seed(0)

    def step(self, x: torch.Tensor, y: torch.Tensor, scrambled: torch.Tensor, has_mask: torch.Tensor) -> None:
        from audit.finetune.losses import Step

        self.optimiser.zero_grad(set_to_none=True)
        self.loss(Step(self.model, x, y, scrambled, has_mask, self.taps, 1.0, 10.0, self.generator))["total"].backward()
        self.optimiser.step()


def epoch_seconds(runners: dict[str, Plain], data: list[tuple]) -> dict[str, float]:
    """One epoch for every runner, interleaved batch by batch so that load from other processes
    falls on all of them alike."""
    seconds = dict.fromkeys(runners, 0.0)
    for batch in data:
        for name, runner in runners.items():
            start = time.perf_counter()
            runner.step(*batch)
            seconds[name] += time.perf_counter() - start
    return seconds


def main() -> None:
    from audit.allocator import reuse_freed_memory

    reuse_freed_memory()  # as the command line does
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--model", type=Path, nargs="+",
                        default=[ROOT / "sample_models" / "biased.onnx", ROOT / "sample_models" / "biased.pt"])
    parser.add_argument("--cache", type=Path, default=ROOT / "bench-out")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from audit.finetune.normalisation import trainable
    from audit.models.loader import ModelOptions, load_classifier

    args.cache.mkdir(parents=True, exist_ok=True)
    reports = {}
    for path in args.model:
        classifier = load_classifier(path, ModelOptions(input_size=(28, 28), channels=1) if path.suffix == ".pt" else ModelOptions())
        data = batches(args, classifier)
        inputs = [batch[0] for batch in data]
        start = trainable(copy.deepcopy(classifier.differentiable), inputs[0], inputs)
        runners: dict[str, Plain] = {"plain": Plain(copy.deepcopy(start))}
        runners.update({name: WithLoss(copy.deepcopy(start), name) for name in LOSSES})
        epoch_seconds(runners, data[:2])  # warm-up
        epochs = [epoch_seconds(runners, data) for _ in range(args.repeats)]
        best = {name: min(e[name] for e in epochs) for name in runners}
        reports[path.name] = {
            "batch_norm_inserted": len(getattr(start, "names", [])),
            "seconds_per_epoch": {name: round(value, 3) for name, value in best.items()},
            "ratio_to_plain": {name: round(best[name] / best["plain"], 2) for name in LOSSES},
        }
    report = {"images": sum(len(b[1]) for b in data), "threads": torch.get_num_threads(), "mode": "train",
              "models": reports, "goal": "actdiff <= 2.2"}
    print(json.dumps(report, indent=2))
    (args.cache / "finetune_bench.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
