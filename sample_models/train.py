"""Train and export the sample classifiers on the synthetic crosses-and-box data.

``biased`` is trained on the biased train split (box lower-left for one cross, lower-right for
two), reaches train AUC ≈ 1 and, as in Viviano et al. (2019) Table 1, valid AUC ≈ 0: it reads
the box, whose logic is reversed in valid and test. ``unbiased`` is the same network trained on
data whose box position is random, so it has to count the crosses. Both are evaluated on the
biased valid and test splits; the script stops without exporting a model whose valid AUC is
off target (biased < 0.2, unbiased > 0.8). Inputs: (N, 1, 28, 28), x in [0, 1] (mean 0, std 1).

    python -m sample_models.train --out sample_models
"""

from __future__ import annotations

import argparse
import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from audit.data.synthetic import SyntheticSplit, generate, generate_split


class Block(nn.Module):
    """A basic residual block: conv-BN-ReLU, conv-BN, plus a (projected) shortcut, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.shortcut = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """Stem, four residual blocks (28 → 14 → 7 → 4 → 2 pixels), global average pool, linear."""

    def __init__(self, widths: tuple[int, ...] = (8, 16, 32, 32), num_classes: int = 2) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        self.layers = nn.Sequential(
            *(Block(cin, cout, 2) for cin, cout in zip((widths[0],) + widths[:-1], widths))
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


@contextmanager
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class Scores:
    auc: float
    accuracy: float


def _tensor(split: SyntheticSplit) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(split.images[:, None]), torch.from_numpy(split.labels)


@torch.no_grad()
def evaluate(model: nn.Module, split: SyntheticSplit) -> Scores:
    """AUC of P(class 1) and accuracy, in eval mode."""
    model.eval()
    x, y = _tensor(split)
    probs = torch.softmax(model(x), dim=1)
    auc = roc_auc_score(y.numpy(), probs[:, 1].numpy())
    return Scores(auc=float(auc), accuracy=float((probs.argmax(1) == y).float().mean()))


def train(
    box: str,
    *,
    seed: int = 0,
    n_train: int = 500,
    min_epochs: int = 20,
    max_epochs: int = 60,
    target_auc: float = 0.999,
    target_accuracy: float = 0.99,
    lr: float = 1e-3,
    batch_size: int = 32,
) -> tuple[SmallResNet, Scores]:
    """Train on the ``box`` ("biased" / "random") train split until, in eval mode, the train AUC
    reaches ``target_auc`` and the accuracy ``target_accuracy``, at least ``min_epochs`` and at
    most ``max_epochs`` epochs.

    Returns the model in eval mode and its train scores. Deterministic given ``seed``: it runs on
    one thread (restored afterwards), which fixes the order of float reductions on any machine
    and, for a model this small, is also faster than several.
    """
    with one_thread():
        torch.manual_seed(seed)
        data = generate_split("train", n_train, seed=seed, box=box)
        model = SmallResNet()
        scores = fit(model, data, seed=seed, lr=lr, batch_size=batch_size, min_epochs=min_epochs, max_epochs=max_epochs,
                     done=lambda s: s.auc >= target_auc and s.accuracy >= target_accuracy)
        return model.eval(), scores


def fit(model: nn.Module, data: SyntheticSplit, *, seed: int, lr: float, batch_size: int, min_epochs: int, max_epochs: int,
        done: Callable[[Scores], bool]) -> Scores:
    """Adam on the cross-entropy, in train mode, batches in a seeded random order, scored in eval
    mode after every epoch; stop once ``done(scores)`` holds after at least ``min_epochs``.
    Returns the last epoch's scores."""
    x, y = _tensor(data)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed)
    for epoch in range(1, max_epochs + 1):
        model.train()
        for idx in torch.randperm(len(y), generator=order).split(batch_size):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            optimiser.step()
        scores = evaluate(model, data)
        if epoch >= min_epochs and done(scores):
            break
    return scores


def export(model: nn.Module, out: Path, name: str, *, legacy_onnx: bool = False) -> list[Path]:
    """Write ``name``.pt (TorchScript), .pt2 (torch.export), .onnx (dynamo exporter, opset 20)
    and, with ``legacy_onnx``, ``name``_legacy.onnx (TorchScript-based exporter, opset 17).
    All take a dynamic batch dimension; the input is named ``x``, the output ``logits``."""
    model = model.eval()
    example = (torch.rand(4, 1, 28, 28),)
    batch = torch.export.Dim("batch", min=1)
    paths = [out / f"{name}.pt", out / f"{name}.pt2", out / f"{name}.onnx"]
    torch.jit.script(model).save(str(paths[0]))
    torch.export.save(torch.export.export(model, example, dynamic_shapes={"x": {0: batch}}), paths[1])
    names = {"input_names": ["x"], "output_names": ["logits"]}
    torch.onnx.export(
        model,
        example,
        paths[2],
        dynamo=True,
        opset_version=20,
        dynamic_shapes={"x": {0: batch}},
        external_data=False,
        verbose=False,
        **names,
    )
    if legacy_onnx:
        paths.append(out / f"{name}_legacy.onnx")
        torch.onnx.export(
            model,
            example,
            paths[3],
            dynamo=False,
            opset_version=17,
            dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
            **names,
        )
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    evaluation = generate(seed=args.seed, box="biased")
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    for name, box, valid_ok in (
        ("biased", "biased", lambda auc: auc < 0.2),
        ("unbiased", "random", lambda auc: auc > 0.8),
    ):
        model, train_scores = train(box, seed=args.seed)
        metrics[name] = {"train": asdict(train_scores)} | {
            split: asdict(evaluate(model, evaluation[split])) for split in ("valid", "test")
        }
        if not valid_ok(metrics[name]["valid"]["auc"]):
            raise SystemExit(f"{name}: valid AUC {metrics[name]['valid']['auc']:.3f} is off target; not exported")
        for path in export(model, args.out, name, legacy_onnx=name == "biased"):
            print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print("model     split  AUC    accuracy")
    for name, splits in metrics.items():
        for split, scores in splits.items():
            print(f"{name:9s} {split:6s} {scores['auc']:.3f}  {scores['accuracy']:.3f}")


if __name__ == "__main__":
    main()
