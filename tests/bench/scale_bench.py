"""``make bench`` at clinical scale (issue 15): a ResNet-18-style and a DenseNet-121-style
classifier at 3×224×224 on generated images, as ratios measured in one process.

Models (random seeded weights, built here from the test zoo's blocks, no torchvision): ResNet-18
(7×7 stem, BasicBlocks [2, 2, 2, 2] at 64, 128, 256, 512 channels) and DenseNet-121 (growth 32,
BN-ReLU-Conv bottlenecks of 4 × growth, blocks [6, 12, 24, 16], transitions halving channels
and size), exported as ONNX (opset 17, dynamic batch) and torch.export (.pt2). Images: ``--images``
(256) generated 224 px RGB PNGs in two class folders, with an artefact mask (a bright marker,
left for one class and right for the other, as a ruler or a pen mark) and a region mask (the
"organ", an ellipse), written once under ``--cache``.

Parts (``--parts``, all by default); every timing is the best of ``--repeats`` interleaved runs:

- ``throughput`` (per model and format): (a) ``audit run --method gradient`` (loading the images,
  forward, gradient, per-image CSV, results; no masks) against the bare forward+backward of the
  same differentiable model on the same batches, already in memory on the device (goal ≥ 0.9);
  (b) all metrics (masks given) against saliency alone (the same data streamed through the
  forward pass and gradient maps, nothing else), with the ablation's forward passes excluded
  (goal ≤ 1.10) and reported apart (seconds, and as a ratio with them).
- ``memory``: (c) peak resident memory of the audit process (its worker processes hold only
  their bounded read-ahead) with ``--memory-images`` and 10× as many, each in a fresh process
  (goal: flat, ratio close to 1).
- ``sharding``: (d) ``audit run --engine ray --shards 2`` against the same two shards
  (``--shard 1/2``, ``--shard 2/2``) then ``audit merge``, one after the other in this process
  (goal: Ray's overhead ≤ 15% of the work); skipped with a line saying so where ``audit run``
  has no ``--engine``.
- ``workers``: (e) all metrics with ``--workers 0`` (a reading thread) against the default
  number of worker processes.

``--device cuda --batch-size 64`` runs the same on a GPU (``tests/bench/gpu.sh``), and
``--cpu-images N`` adds the images/s of the same run on the CPU and the GPU's speed-up over it.

Usage: python tests/bench/scale_bench.py [--images 256] [--models resnet18,densenet121]
       [--formats onnx,pt2] [--parts throughput,memory,sharding,workers] [--device cpu]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.run import audit_run, timings  # noqa: E402
from tests.models.zoo.architectures import BasicBlock, DenseBlock  # noqa: E402

SIZE = 224
CLASSES = 2
FORMATS = {"onnx": "onnx17", "pt2": "pt2"}
PARTS = ("throughput", "memory", "sharding", "workers")


# --- models ------------------------------------------------------------------------------


class ResNet18(nn.Module):
    """He et al. (2016), torchvision's ResNet-18 layout: BasicBlocks [2, 2, 2, 2], 64–512 channels."""

    def __init__(self, classes: int = CLASSES) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, cin = [], 64
        for i, width in enumerate((64, 128, 256, 512)):
            stages.append(nn.Sequential(BasicBlock(cin, width, 1 if i == 0 else 2), BasicBlock(width, width)))
            cin = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class DenseNet121(nn.Module):
    """torchvision's DenseNet-121 layout: 7×7 stem (64), blocks [6, 12, 24, 16] of growth 32,
    transitions BN-ReLU-Conv1×1 (half the channels) and 2×2 average pooling, 1024 features."""

    def __init__(self, classes: int = CLASSES, growth: int = 32, blocks: tuple[int, ...] = (6, 12, 24, 16)) -> None:
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv2d(3, 64, 7, 2, 3, bias=False))
        self.features.add_module("norm0", nn.BatchNorm2d(64))
        self.features.add_module("relu0", nn.ReLU(inplace=True))
        self.features.add_module("pool0", nn.MaxPool2d(3, 2, 1))
        channels = 64
        for i, layers in enumerate(blocks, 1):
            self.features.add_module(f"denseblock{i}", DenseBlock(layers, channels, growth, bottleneck=4))
            channels += layers * growth
            if i < len(blocks):
                transition = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                                           nn.Conv2d(channels, channels // 2, 1, bias=False), nn.AvgPool2d(2))
                self.features.add_module(f"transition{i}", transition)
                channels //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.classifier = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.features(x))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1))


MODELS = {"resnet18": ResNet18, "densenet121": DenseNet121}


def model_file(name: str, export_name: str, cache: Path) -> Path:
    """``name`` (seeded random weights, eval mode) exported as ``export_name``, written once."""
    from tests.models.zoo.exports import EXPORTS, write

    export = EXPORTS[FORMATS[export_name]]
    path = cache / f"{name}-{SIZE}{'-onnx' if export.suffix == '.onnx' else ''}{export.suffix}"
    if not path.exists():
        torch.manual_seed(0)
        private = path.with_name(f"tmp-{path.name}")
        write(MODELS[name]().eval(), export, private, SIZE)
        private.rename(path)
    return path


# --- data ---------------------------------------------------------------------------------


def write_images(root: Path, count: int, seed: int = 0) -> Path:
    """``count`` 224 px RGB PNGs under ``root/images/class{0,1}``, with artefact and region masks
    mirroring them (``root/artefacts``, ``root/regions``); written once (a ``done`` file marks
    a complete set)."""
    from PIL import Image

    if (root / "done").exists():
        return root
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    for i in range(count):
        label = i % 2
        coarse = rng.random((8, 8, 3))  # smooth background, like tissue or a film
        image = np.kron(coarse, np.ones((28, 28, 1)))
        image = 0.6 * image + 0.1 * rng.random((SIZE, SIZE, 3))
        centre = 0.5 + 0.05 * rng.standard_normal()
        region = ((rows - centre) / 0.3) ** 2 + ((cols - 0.5) / 0.22) ** 2 <= 1
        image[region] += 0.25
        artefact = np.zeros((SIZE, SIZE), dtype=bool)
        top, left = int(rng.integers(10, 40)), (12 if label == 0 else SIZE - 40) + int(rng.integers(0, 16))
        artefact[top : top + 14, left : left + 14] = True
        image[artefact] = 1.0
        name = f"class{label}/{i:05d}.png"
        for folder, array in (("images", image), ("artefacts", artefact), ("regions", region)):
            path = root / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = (np.clip(array, 0, 1) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(path)
    (root / "done").write_text(f"{count}\n")
    return root


# --- measurements --------------------------------------------------------------------------


def load(path: Path, device: torch.device):
    from audit.models.loader import ModelOptions, load_classifier

    options = {"input_size": (SIZE, SIZE), "channels": 3}
    if device.type != "cpu":  # the CPU is where a ModelOptions without a device puts the model
        options["device"] = device
    return load_classifier(path, ModelOptions(**options))


def throughput(path: Path, root: Path, args: argparse.Namespace, device: torch.device) -> dict:
    """(a) and (b) for one model file."""
    t = timings(load(path, device), root, args.batch_size, args.repeats, args.cache)
    images, bare, plain, audited, alone, ablated = (t[k] for k in ("images", "bare", "plain", "audited", "alone", "ablated"))
    return {
        "images": images,
        "bare_images_per_s": round(images / bare, 1),
        "gradient_images_per_s": round(images / plain, 1),
        "gradient_ratio": round(bare / plain, 3),
        "gradient_goal": ">= 0.9",
        "saliency_alone_images_per_s": round(images / alone, 1),
        "all_metrics_images_per_s": round(images / audited, 1),
        "ablation_forwards_s": round(ablated, 2),
        "metrics_ratio_without_ablation_forwards": round((audited - ablated) / alone, 3),
        "metrics_goal": "<= 1.10",
        "metrics_ratio_with_ablation_forwards": round(audited / alone, 3),
    }


def cpu_images_per_s(path: Path, root: Path, args: argparse.Namespace) -> float:
    """Images/s of all metrics with the gradient method on the CPU, on the first ``--cpu-images``."""
    from tests.bench.run import open_data

    classifier = load(path, torch.device("cpu"))
    subset = root.parent / f"{root.name}-first-{args.cpu_images}"
    if not subset.exists():
        dataset = open_data(classifier, root)
        for rel, _ in dataset.entries[: args.cpu_images]:
            for folder in ("images", "artefacts", "regions"):
                target = subset / folder / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes((root / folder / rel).read_bytes())
    seconds, _ = audit_run(classifier, subset, args.cache / "cpu", ["gradient"], min(args.batch_size, 32))
    return args.cpu_images / seconds


def memory_child(args: argparse.Namespace) -> None:
    classifier = load(model_file("resnet18", "onnx", args.cache), torch.device(args.device))
    root = write_images(args.cache / f"images-{args.images}", args.images)
    audit_run(classifier, root, args.cache / f"mem-{args.images}", ["gradient"], args.batch_size, 32)
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def memory(args: argparse.Namespace) -> dict:
    """(c): peak resident memory at ``--memory-images`` and 10× as many, each in a fresh process."""
    peaks = {}
    for images in (args.memory_images, 10 * args.memory_images):
        write_images(args.cache / f"images-{images}", images)
        command = [sys.executable, __file__, "--child-memory", "--images", str(images), "--cache", str(args.cache),
                   "--batch-size", str(args.batch_size), "--device", args.device]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        peaks[images] = json.loads(output.strip().splitlines()[-1])["peak_rss_mb"]
    small, large = peaks
    return {
        "model": "resnet18 (ONNX)",
        f"{small}_images_mb": round(peaks[small], 1),
        f"{large}_images_mb": round(peaks[large], 1),
        "ratio": round(peaks[large] / peaks[small], 3),
        "goal": "flat (ratio close to 1)",
    }


def cli(arguments: list[str]) -> tuple[int, str]:
    """``audit ARGUMENTS`` in this process: exit code and what it printed."""
    from audit.cli.main import main

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        code = main([str(a) for a in arguments])
    return code, printed.getvalue()


def sharding(path: Path, root: Path, args: argparse.Namespace) -> dict:
    """(d): ``--engine ray --shards 2`` against the two shards and the merge, one after the other."""
    _, usage = cli(["run", "--help"])
    if "--engine" not in usage or "--shard" not in usage:
        return {"skipped": "audit run has no --engine/--shard options in this tree (issue 15, sharded runs)"}
    common = ["run", path, "--data", root / "images", "--masks", root / "artefacts", "--regions", root / "regions",
              "--method", "gradient", "--batch-size", args.batch_size, *(["--device", args.device] if "--device" in usage else []),
              "--randomization-images", 0]  # run by shard 1 alone: it would measure the imbalance, not Ray (README)
    ray, running, sequential = [], [], []
    for repeat in range(args.repeats):
        out = args.cache / "shards" / str(repeat)
        shutil.rmtree(out, ignore_errors=True)  # finished parts of an earlier bench would be resumed, not run
        start = time.perf_counter()
        code, printed = cli([*common, "--engine", "ray", "--shards", "2", "--out", out / "ray"])
        ray.append(time.perf_counter() - start)
        if code != 0:
            return {"error": f"--engine ray exited {code}: {printed.strip()[-300:]}"}
        running.append(on_running_cluster(common, out / "running"))
        start = time.perf_counter()
        for shard in (1, 2):
            code, printed = cli([*common, "--shard", f"{shard}/2", "--out", out / "parts" / str(shard)])
            if code != 0:
                return {"error": f"--shard {shard}/2 exited {code}: {printed.strip()[-300:]}"}
        code, printed = cli(["merge", out / "parts" / "1", out / "parts" / "2", "--out", out / "merged"])
        sequential.append(time.perf_counter() - start)
        if code != 0:
            return {"error": f"audit merge exited {code}: {printed.strip()[-300:]}"}
    return {
        "model": path.name,
        "ray_2_shards_s": round(min(ray), 2),
        "sequential_2_shards_and_merge_s": round(min(sequential), 2),
        "ray_overhead": round(min(ray) / min(sequential) - 1, 3),
        "ray_on_running_cluster_s": round(min(running), 2),
        "ray_overhead_on_running_cluster": round(min(running) / min(sequential) - 1, 3),
        "goal": "<= 0.15",
    }


def on_running_cluster(common: list, out: Path) -> float:
    """Seconds of ``--engine ray --shards 2`` on a cluster that is already up, as with
    ``--address`` (a connection made before the run is used and kept): the cluster's start and
    shutdown are not in the run; its second use finds Ray's worker processes warm."""
    import ray

    ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        cli([*common, "--engine", "ray", "--shards", "2", "--out", out / "warm-up"])
        start = time.perf_counter()
        code, printed = cli([*common, "--engine", "ray", "--shards", "2", "--out", out / "timed"])
        seconds = time.perf_counter() - start
    finally:
        ray.shutdown()
    if code != 0:
        raise RuntimeError(f"--engine ray on a running cluster exited {code}: {printed.strip()[-300:]}")
    return seconds


def workers(path: Path, root: Path, args: argparse.Namespace, device: torch.device) -> dict:
    """(e): all metrics with the images read by a thread (``--workers 0``) and by the default workers."""
    from audit.data.loading import default_workers
    from audit.pipeline import RunConfig, run_audit
    from tests.bench.run import open_data

    classifier = load(path, device)

    def timed(count: int | None) -> float:
        config = RunConfig(methods=["gradient"], batch_size=args.batch_size, randomization_images=0, workers=count,
                           device=str(classifier.device))
        start = time.perf_counter()
        run_audit(classifier, open_data(classifier, root), config, args.cache / f"workers-{count}")
        return time.perf_counter() - start

    timed(None)  # warm-up, and the worker server's start
    thread, processes = [], []
    for _ in range(args.repeats):
        thread.append(timed(0))
        processes.append(timed(None))
    images = len(open_data(classifier, root).entries)
    return {
        "model": path.name,
        "default_workers": default_workers(),
        "workers_0_images_per_s": round(images / min(thread), 1),
        "default_workers_images_per_s": round(images / min(processes), 1),
        "speed_up": round(min(thread) / min(processes), 3),
    }


def main() -> None:
    from audit.allocator import reuse_freed_memory

    reuse_freed_memory()  # as the command line does
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--memory-images", type=int, default=64, help="(c): this many images and 10x as many")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cpu-images", type=int, default=0, help="with a GPU: also time this many images on the CPU")
    parser.add_argument("--cache", type=Path, default=ROOT / "bench-out" / "scale")
    parser.add_argument("--child-memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.child_memory:
        memory_child(args)
        return
    device = torch.device(args.device)
    parts = args.parts.split(",")
    root = write_images(args.cache / f"images-{args.images}", args.images)
    report: dict = {"size": SIZE, "images": args.images, "batch_size": args.batch_size, "device": str(device),
                    "threads": torch.get_num_threads()}

    def record(key: str, row: dict) -> None:
        report[key] = row
        print(key, json.dumps(row), file=sys.stderr, flush=True)

    if "throughput" in parts:
        for name in args.models.split(","):
            for export_name in args.formats.split(","):
                path = model_file(name, export_name, args.cache)
                row = throughput(path, root, args, device)
                if args.cpu_images:
                    row["cpu_all_metrics_images_per_s"] = round(cpu_images_per_s(path, root, args), 1)
                    row["speed_up_over_cpu"] = round(row["all_metrics_images_per_s"] / row["cpu_all_metrics_images_per_s"], 1)
                record(f"{name}_{export_name}", row)
    first = model_file(args.models.split(",")[0], args.formats.split(",")[0], args.cache)
    if "memory" in parts:
        record("peak_memory", memory(args))
    if "sharding" in parts:
        record("sharding", sharding(first, root, args))
    if "workers" in parts:
        record("workers", workers(first, root, args, device))
    print(json.dumps(report, indent=2))
    (args.cache / "bench.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
