"""Time per epoch of WILDCAT training against plain fine-tuning of the same model on the same
batches, as a ratio measured in one process (goal: ≤ 1.2×).

Both train as the commands train them. Plain: ``audit finetune --loss none``'s model (the
hookable model, ``Classifier.layered``, in ``finetune.normalisation.trainable`` form: train mode,
BatchNorm inserted where the exporter folded it) and a bare Adam step on the cross-entropy. WILDCAT: ``audit
wildcat``'s network (``build_wildcat`` with the default head, ``training.prepare``: the same
normalisation) and ``train_wildcat``'s step: the trunk to the cut, the head, the one-vs-rest
binary cross-entropy, Adam. The two are interleaved batch by batch (the machine may be shared)
and the best of ``--repeats`` epochs is kept.

Usage: python tests/bench/wildcat_bench.py [--images 500] [--model sample_models/unbiased.onnx ...]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.finetune_bench import Plain, epoch_seconds  # noqa: E402 (the same baseline and interleaving)


class Wildcat(Plain):
    """``train_wildcat``'s step: features to the cut, the WILDCAT head, BCE, Adam."""

    def step(self, x: torch.Tensor, y: torch.Tensor, *unused: object) -> None:
        from audit.finetune.wildcat.training import bce

        scores, _ = self.model.head(self.model.features(x))
        self.optimiser.zero_grad(set_to_none=True)
        bce(scores, y).backward()
        self.optimiser.step()


def main() -> None:
    from audit.allocator import reuse_freed_memory

    reuse_freed_memory()  # as the command line does
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--model", type=Path, nargs="+",
                        default=[ROOT / "sample_models" / "unbiased.onnx", ROOT / "sample_models" / "unbiased.pt"])
    parser.add_argument("--cache", type=Path, default=ROOT / "bench-out")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from audit.data.dataset import open_dataset
    from audit.data.synthetic import make_synthetic
    from audit.finetune.data import Split
    from audit.finetune.normalisation import trainable
    from audit.finetune.wildcat.network import build_wildcat
    from audit.finetune.wildcat.training import WildcatConfig, prepare
    from audit.models.loader import ModelOptions, load_classifier

    args.cache.mkdir(parents=True, exist_ok=True)
    root = args.cache / f"wildcat-{args.images}"
    if not root.exists():
        make_synthetic(root, seed=1, n_train=args.images, n_valid=2, n_test=2, box="random")
    reports = {}
    for path in args.model:
        classifier = load_classifier(path, ModelOptions(input_size=(28, 28), channels=1) if path.suffix == ".pt" else ModelOptions())
        dataset = open_dataset(root / "train" / "images", size=(28, 28), channels=1)
        split = Split.read(dataset, args.batch_size)
        data = [(classifier.to_input(b.images), torch.from_numpy(b.labels), None, None) for b in split.batches(args.batch_size)]
        inputs = [batch[0] for batch in data]
        plain = trainable(copy.deepcopy(classifier.layered), inputs[0], inputs)  # as run_experiment
        net = prepare(build_wildcat(classifier), classifier, split, WildcatConfig(batch_size=args.batch_size))
        runners = {"plain": Plain(plain), "wildcat": Wildcat(net)}
        epoch_seconds(runners, data[:2])  # warm-up
        epochs = [epoch_seconds(runners, data) for _ in range(args.repeats)]
        best = {name: min(e[name] for e in epochs) for name in runners}
        reports[path.name] = {
            "cut": net.layer,
            "seconds_per_epoch": {name: round(value, 3) for name, value in best.items()},
            "ratio_to_plain": round(best["wildcat"] / best["plain"], 2),
        }
    report = {"images": sum(len(batch[1]) for batch in data), "batch_size": args.batch_size, "threads": torch.get_num_threads(),
              "mode": "train", "models": reports, "goal": "wildcat <= 1.2"}
    print(json.dumps(report, indent=2))
    (args.cache / "wildcat_bench.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
