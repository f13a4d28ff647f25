"""``make bench``: the randomisation check's cost per layer and image, for the ONNX and the
TorchScript files of one model, against the main pass's cost per image (issue 17).

Model: the ResNet-18 of ``scale_bench`` (random seeded weights, 3×``--size``²), exported as
ONNX (opset 17, BatchNorm folded) and as a TorchScript trace. Images: ``scale_bench``'s
generated PNGs. Per format, best of ``--repeats``:

- main pass per image: ``run_audit --method gradient`` without the check, seconds / images;
- the check per layer and image, two ways: the map computations alone (results.json's
  ``seconds_per_layer_per_image``) and the whole stage (the run with ``--randomization-images R``
  minus the run without it, over steps × R: deep copies, re-initialisation and Spearman included).

Goals: ONNX and TorchScript within 20% of each other; the check's cost per layer and image at
most the main pass's cost per image.

Usage: python tests/bench/randomisation_bench.py [--images 32] [--randomised 4] [--size 224]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench import scale_bench  # noqa: E402


def measure(path: Path, root: Path, args: argparse.Namespace) -> dict:
    from audit.data.dataset import open_dataset
    from audit.models.loader import ModelOptions, load_classifier
    from audit.pipeline import RunConfig, run_audit

    classifier = load_classifier(path, ModelOptions(input_size=(args.size, args.size), channels=3))
    dataset = open_dataset(root / "images", size=(args.size, args.size), channels=3)
    classifier.class_names = list(dataset.classes)

    def timed(randomised: int) -> tuple[float, dict]:
        config = RunConfig(methods=["gradient"], batch_size=args.batch_size, randomization_images=randomised)
        start = time.perf_counter()
        results = run_audit(classifier, dataset, config, args.cache / "runs" / path.stem)
        return time.perf_counter() - start, results

    timed(0)  # warm-up: the twin, the allocator
    main, checked, maps = [], [], []
    for _ in range(args.repeats):
        main.append(timed(0)[0])
        seconds, results = timed(args.randomised)
        block = results["methods"]["gradient"]["randomization"]
        steps = len(block["cascading"]) + len(block["independent"])
        checked.append((seconds - main[-1]) / (steps * block["images"]))
        maps.append(block["seconds_per_layer_per_image"])
    return {"layers": len(block["layers"]), "main_s_per_image": min(main) / len(dataset),
            "check_s_per_layer_image": min(checked), "maps_s_per_layer_image": min(maps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--randomised", type=int, default=4)
    parser.add_argument("--size", type=int, default=scale_bench.SIZE)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=ROOT / "bench-out" / "randomisation")
    args = parser.parse_args()
    from tests.models.zoo.exports import EXPORTS, write

    args.cache.mkdir(parents=True, exist_ok=True)
    scale_bench.SIZE = args.size
    root = scale_bench.write_images(args.cache / f"data-{args.size}-{args.images}", args.images)
    report: dict = {"size": args.size, "images": args.images, "randomised": args.randomised, "threads": torch.get_num_threads()}
    for name, export in (("onnx", "onnx17"), ("torchscript", "trace")):
        path = args.cache / f"resnet18-{args.size}{EXPORTS[export].suffix}"
        if not path.exists():
            torch.manual_seed(0)
            write(scale_bench.ResNet18().eval(), EXPORTS[export], path, args.size)
        report[name] = measure(path, root, args)
        print(name, json.dumps(report[name]), flush=True)
    onnx, script = report["onnx"], report["torchscript"]
    report["onnx_over_torchscript"] = round(onnx["check_s_per_layer_image"] / script["check_s_per_layer_image"], 3)
    report["check_over_main"] = {name: round(report[name]["check_s_per_layer_image"] / report[name]["main_s_per_image"], 3)
                                 for name in ("onnx", "torchscript")}
    report["goals"] = "onnx_over_torchscript within [0.8, 1.25]; check_over_main <= 1"
    print(json.dumps(report, indent=2))
    (ROOT / "bench-out").mkdir(exist_ok=True)
    (ROOT / "bench-out" / "randomisation_bench.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
