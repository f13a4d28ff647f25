"""How the fine-tuning defaults were chosen: actdiff on biased models trained here in several
ways and exported as users export them (``tests/finetune/zoo.py``), over a grid of learning
rates and λ_act, as ``audit finetune`` trains (train mode, BatchNorm inserted where folded).

For every model, export and setting it prints the first epoch whose validation AUROC (the
synthetic valid split, 128 images, box logic reversed) reaches 0.9, the best AUROC in
``--epochs`` epochs, and whether any epoch showed a collapse sign. The defaults are the setting
that reaches 0.9 on every model soonest.

Usage: python tests/bench/finetune_defaults.py [--lr 1e-3 3e-3] [--lambda-act 0.3 1 3] [--epochs 30]
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

MODELS = {  # name: (architecture, its options, seed, exports)
    "resnet": ("resnet", {}, 0, ("torchscript", "onnx-folded", "onnx-dynamo")),
    "resnet-seed1": ("resnet", {}, 1, ("torchscript", "onnx-folded")),
    "resnet-wide": ("resnet", {"widths": (16, 32, 64)}, 2, ("torchscript", "onnx-folded")),
    "resnet-deep": ("resnet", {"blocks": 2}, 3, ("torchscript", "onnx-folded")),
    "resnet-no-bn": ("resnet-nobn", {}, 0, ("onnx-folded",)),
    "cnn-no-bn": ("cnn", {}, 0, ("torchscript", "onnx-folded")),
}


def main() -> None:
    from audit.allocator import reuse_freed_memory
    from audit.data.dataset import open_dataset
    from audit.data.synthetic import make_synthetic
    from audit.finetune.data import Split
    from audit.finetune.losses import losses
    from audit.finetune.normalisation import trainable
    from audit.finetune.training import TrainConfig, TrainingData, train
    from audit.models.loader import ModelOptions, load_classifier
    from tests.finetune import zoo

    reuse_freed_memory()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, nargs="+", default=[1e-3, 3e-3])
    parser.add_argument("--lambda-act", type=float, nargs="+", default=[0.3, 1.0, 3.0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--cache", type=Path, default=ROOT / "bench-out" / "finetune-defaults")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.cache.mkdir(parents=True, exist_ok=True)
    data = args.cache / "data"
    if not data.exists():
        make_synthetic(data, seed=0, n_train=500, n_valid=128, n_test=2)
    train_set = open_dataset(data / "train" / "images", size=(28, 28), channels=1, regions=data / "train" / "regions", mask_blur=0.5)
    valid_set = open_dataset(data / "valid" / "images", size=(28, 28), channels=1)
    train_split, valid_split = Split.read(train_set, 32), Split.read(valid_set, 32)
    rows = []
    for name, (kind, options, seed, exports) in MODELS.items():
        torch.manual_seed(seed)
        module = zoo.build(kind, **options)
        zoo.train_biased(module, seed=seed)
        for how in exports:
            path = zoo.export(module, args.cache / f"{name}.{how}{zoo.EXPORTS[how]}", how)
            classifier = load_classifier(path, ModelOptions(input_size=(28, 28), channels=1))
            inputs = [classifier.spec.to_tensor(b.images) for b in train_split.batches(32)]
            start = trainable(copy.deepcopy(classifier.differentiable), inputs[0], inputs)
            for lr in args.lr:
                for lambda_act in args.lambda_act:
                    model = copy.deepcopy(start)
                    config = TrainConfig(loss="actdiff", epochs=args.epochs, lr=lr, lambda_act=lambda_act, patience=None)
                    checkpoint = args.cache / "checkpoint.pt"
                    checkpoint.unlink(missing_ok=True)
                    began = time.perf_counter()
                    result = train(model, losses.get("actdiff"), TrainingData(train_split, classifier.spec, "regions"),
                                   valid_split, config, checkpoint)
                    aucs = [h.valid_auc for h in result.history]
                    row = {"model": name, "export": how, "inserted_batch_norm": len(getattr(start, "names", [])),
                           "lr": lr, "lambda_act": lambda_act,
                           "first_epoch_at_0.9": next((h.epoch for h in result.history if (h.valid_auc or 0) >= 0.9), None),
                           "best_auc": round(max(a for a in aucs if a is not None), 3),
                           "collapse_signs": sorted({s for h in result.history for s in h.signs}),
                           "seconds": round(time.perf_counter() - began, 1)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    (args.cache / "finetune_defaults.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\nsetting: models reaching 0.9 / all, worst first epoch at 0.9")
    for lr in args.lr:
        for lambda_act in args.lambda_act:
            chosen = [r for r in rows if r["lr"] == lr and r["lambda_act"] == lambda_act]
            reached = [r["first_epoch_at_0.9"] for r in chosen if r["first_epoch_at_0.9"] is not None]
            worst = max(reached) if len(reached) == len(chosen) else None
            print(f"lr {lr:g}, lambda_act {lambda_act:g}: {len(reached)}/{len(chosen)}, worst {worst}")


if __name__ == "__main__":
    main()
