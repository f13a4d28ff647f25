"""Biased classifiers trained here, in several ways, and exported as users export them: the
independent cases that fine-tuning's defaults are chosen and tested on (not only the committed
sample model).

Architectures (1×28×28 → 2 logits, global average pooling and a linear head):

- ``resnet``: residual blocks of conv-BN-ReLU / conv-BN plus a (projected) shortcut, as
  torchvision's ResNet; ``widths`` and ``blocks`` set width and depth.
- ``resnet-nobn``: the same without any normalisation (convolutions with bias).
- ``cnn``: plain conv-ReLU stacks with max pooling and no normalisation (the paper's "CNN").

Exports (``export``):

- ``torchscript``: ``torch.jit.script`` (.pt); BatchNorm stays a module.
- ``onnx-folded``: the legacy exporter with its defaults (constant folding, eval mode), which
  folds BatchNorm into the convolutions: what most ONNX files in the wild look like.
- ``onnx-dynamo``: the dynamo exporter (BatchNorm kept as a node).
- ``torch.export``: ``torch.export.save`` with a dynamic batch (.pt2).

``train_biased`` trains on the biased train split (the box tells the class) in train mode
until the model reads the box (train AUC ≥ 0.999), so that its validation AUC is near 0.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from audit.data.synthetic import generate_split
from sample_models.train import one_thread, fit

EXPORTS = {"torchscript": ".pt", "onnx-folded": ".onnx", "onnx-dynamo": ".onnx", "torch.export": ".pt2"}


def _conv(cin: int, cout: int, stride: int, norm: bool, kernel: int = 3) -> list[nn.Module]:
    conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=not norm)
    return [conv, nn.BatchNorm2d(cout)] if norm else [conv]


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, norm: bool) -> None:
        super().__init__()
        self.first = nn.Sequential(*_conv(cin, cout, stride, norm), nn.ReLU())
        self.second = nn.Sequential(*_conv(cout, cout, 1, norm))
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(*_conv(cin, cout, stride, norm, 1))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.second(self.first(x)) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (8, 16, 32), blocks: int = 1, norm: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [*_conv(1, widths[0], 1, norm), nn.ReLU()]
        cin = widths[0]
        for width in widths:
            for k in range(blocks):
                layers.append(Block(cin, width, 2 if k == 0 else 1, norm))
                cin = width
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


class PlainCNN(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (16, 32, 32)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for i, width in enumerate(widths):
            layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU()]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = width
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


def build(kind: str, **kwargs) -> nn.Module:
    if kind == "resnet":
        return ResNet(**kwargs)
    if kind == "resnet-nobn":
        return ResNet(norm=False, **kwargs)
    if kind == "cnn":
        return PlainCNN(**kwargs)
    raise ValueError(kind)


def train_biased(model: nn.Module, *, seed: int = 0, n_train: int = 500, epochs: int = 40, min_epochs: int = 15, lr: float = 1e-3,
                 batch_size: int = 32) -> float:
    """Train ``model`` in place on the biased split until train AUC ≥ 0.999 (at least ``min_epochs``);
    returns that AUC. One thread, seeded: deterministic (the sample models' loop, ``sample_models.train.fit``)."""
    with one_thread():
        torch.manual_seed(seed)
        data = generate_split("train", n_train, seed=seed + 100, box="biased")
        scores = fit(model, data, seed=seed, lr=lr, batch_size=batch_size, min_epochs=min_epochs, max_epochs=epochs,
                     done=lambda s: s.auc >= 0.999)
        return scores.auc


def export(model: nn.Module, path: Path, how: str) -> Path:
    """Write ``model`` (eval mode) to ``path`` as ``how`` (a key of ``EXPORTS``)."""
    model = model.eval()
    example = (torch.rand(4, 1, 28, 28),)
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if how == "torchscript":
            torch.jit.script(model).save(str(path))
        elif how == "onnx-folded":
            torch.onnx.export(model, example, str(path), dynamo=False, input_names=["x"], output_names=["logits"],
                              dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
        elif how == "onnx-dynamo":
            torch.onnx.export(model, example, str(path), dynamo=True, input_names=["x"], output_names=["logits"],
                              dynamic_shapes={"x": {0: batch}}, external_data=False, verbose=False)
        elif how == "torch.export":
            torch.export.save(torch.export.export(model, example, dynamic_shapes={"x": {0: batch}}), str(path))
        else:
            raise ValueError(how)
    return path


def valid_auc(model: nn.Module, seed: int = 0) -> float:
    data = generate_split("valid", 128, seed=seed, box="biased")
    with torch.no_grad():
        scores = torch.softmax(model.eval()(torch.from_numpy(data.images[:, None])), 1)[:, 1].numpy()
    return float(roc_auc_score(data.labels, scores))


def onnx_has_batch_norm(path: Path) -> bool:
    import onnx

    return any(node.op_type == "BatchNormalization" for node in onnx.load(str(path)).graph.node)


__all__ = ["EXPORTS", "build", "export", "train_biased", "valid_auc", "onnx_has_batch_norm"]
