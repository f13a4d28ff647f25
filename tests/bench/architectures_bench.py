"""Transformer-era architectures on CPU: the twin's build time and ``audit run --method gradient``
against the bare eager forward+backward, per model format (issue 14; goal: ratio >= 0.9, as for
the CNNs in ``run.py``).

Two models at 3×224×224, random seeded weights: a ConvNeXt-T-like network (stages of 96, 192,
384 and 768 channels, depths reduced to 1, 1, 2, 1) and a ViT-S/16-like one (384 wide, 6 heads,
MLP ratio 4, 4 blocks, timm's hand-written attention), both from the test zoo
(``tests/models/zoo``). Each is exported as legacy ONNX (opset 17, dynamic batch), dynamo ONNX,
TorchScript (``torch.jit.script``, .pt) and torch.export (.pt2, dynamic batch). Per format:

- ``twin_build_s``: loading the file and building the differentiable model that the gradient
  methods use (``Classifier.differentiable``, its check against the forward-only path included);
- ``ratio``: the bare eager forward+backward of the original module (input gradient of the
  predicted logit) on the same batches, already in memory, over ``run_audit`` with the gradient
  method (loading the images, forward, gradient, per-image CSV, results; no masks); best of
  ``--repeats`` interleaved runs each, in this process.

The run's fixed costs (0.09 s to write the report's example maps, among others) are amortised
over ``--images`` (default 128).

Usage: python tests/bench/architectures_bench.py [--size 224] [--images 128] [--batch-size 16] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

FORMATS = {"onnx_legacy": "onnx17", "onnx_dynamo": "dynamo", "torchscript": "script", "torch_export": "pt2"}


def models(size: int) -> dict[str, nn.Module]:
    from tests.models.zoo.architectures import Attention, ConvNeXt, VisionTransformer

    torch.manual_seed(0)
    return {
        "convnext_t_reduced": ConvNeXt(dims=(96, 192, 384, 768), depths=(1, 1, 2, 1)).eval(),
        "vit_s16_4_blocks": VisionTransformer(Attention, image=size, patch=16, dim=384, depth=4, heads=6, mlp=4).eval(),
    }


def export(module: nn.Module, name: str, export_name: str, size: int, cache: Path) -> tuple[Path, float]:
    from tests.models.zoo.exports import EXPORTS, write

    spec = EXPORTS[export_name]
    path = cache / f"{name}-{size}-{export_name}{spec.suffix}"
    start = time.perf_counter()
    write(module, spec, path, size)
    return path, time.perf_counter() - start


def measure(module: nn.Module, path: Path, images: Path, size: int, args: argparse.Namespace) -> dict:
    from audit.data.dataset import open_dataset
    from audit.models.loader import ModelOptions, load_classifier
    from audit.pipeline import RunConfig, run_audit
    from tests.bench.run import bare_forward_backward

    start = time.perf_counter()
    classifier = load_classifier(path, ModelOptions(input_size=(size, size), channels=3))
    classifier.differentiable  # noqa: B018 (built lazily: this is what is timed)
    build = time.perf_counter() - start

    def dataset():
        return open_dataset(images, size=(size, size), channels=3)

    batches = [classifier.spec.to_tensor(b.images) for b in dataset().batches(args.batch_size)]
    config = RunConfig(methods=["gradient"], batch_size=args.batch_size, randomization_images=0)
    out = args.cache / "runs" / path.stem

    def audited() -> float:
        begin = time.perf_counter()
        run_audit(classifier, dataset(), config, out)
        return time.perf_counter() - begin

    bare_forward_backward(module, batches[:1])  # warm-up
    audited()
    bare, audit = [], []
    for _ in range(args.repeats):  # interleaved, best of each
        bare.append(bare_forward_backward(module, batches))
        audit.append(audited())
    n = sum(len(b) for b in batches)
    return {
        "twin_build_s": round(build, 2),
        "bare_eager_ms_per_image": round(1000 * min(bare) / n, 1),
        "audit_ms_per_image": round(1000 * min(audit) / n, 1),
        "ratio": round(min(bare) / min(audit), 3),
        "goal": ">= 0.9",
    }


def main() -> None:
    from audit.allocator import reuse_freed_memory
    from tests.models.zoo.checks import write_images

    reuse_freed_memory()  # as the command line does
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=ROOT / "bench-out" / "architectures")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    images = write_images(args.cache / f"images-{args.size}-{args.images}", args.images, args.size)
    report: dict = {"size": args.size, "images": args.images, "threads": torch.get_num_threads()}
    for name, module in models(args.size).items():
        report[name] = {}
        for label, export_name in FORMATS.items():
            try:
                path, seconds = export(module, name, export_name, args.size, args.cache)
                row = {"export_s": round(seconds, 2), **measure(module, path, images, args.size, args)}
            except Exception as exc:  # noqa: BLE001 (a format that fails is a finding of the benchmark)
                row = {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:300]}
            report[name][label] = row
            print(name, label, json.dumps(row), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2))
    (args.cache / "bench.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
