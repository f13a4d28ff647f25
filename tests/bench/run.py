"""``make bench``: speed and memory of ``audit run``, as ratios against baselines in the same process.

1. Throughput of ``audit run --method gradient`` on the generated images (loading, forward,
   gradient, per-image CSV, results; no masks, so no mask metrics) against the bare
   forward+backward of the same differentiable model on the same batches (already in memory).
   Goal: ratio >= 0.9.
2. The cost of the metrics: ``audit run`` with the artefact and region masks and every metric
   against saliency alone (loading images and masks, forward, gradient maps, nothing else) on
   the same data. Goal: metrics add at most 10%. Reported with its largest part apart: the
   ablations' two extra forward passes per image (artefact, region), timed on the same batches.
3. The randomisation check's time per layer per image.
4. Peak resident memory of the run at two dataset sizes ten times apart, each in a fresh
   process. Goal: flat (ratio close to 1).

Throughput is measured on two models: the 28×28 sample model, reported without a goal (its
forward+backward costs 0.16-0.19 ms an image, about what decoding the image's PNG and the run's
own per-image work cost, so the ratio measures the PNG decoder more than the audit), and a
ResNet-style classifier at 1×128×128 (random weights, exported to ONNX here). The goals are
measured at clinical scale, on ResNet-18 and DenseNet-121 at 224 px, by ``scale_bench.py``. Every timing is the best of ``--repeats``
interleaved runs; the process allocator is set as the command line sets it
(``audit.allocator``).

Usage: python tests/bench/run.py [--images 3000] [--model sample_models/biased.onnx]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def dataset_with(images: int, cache: Path) -> Path:
    """A synthetic dataset with ``images`` training images (written once, reused)."""
    from audit.data.synthetic import make_synthetic

    root = cache / f"synthetic-{images}"
    if not (root / "train").exists():
        make_synthetic(root, seed=1, n_train=images, n_valid=2, n_test=2)
    return root / "train"


def open_data(classifier, root: Path, masks: bool = True):
    from audit.data.dataset import open_dataset

    return open_dataset(
        root / "images",
        size=(classifier.spec.height, classifier.spec.width),
        channels=classifier.spec.channels,
        masks=root / "artefacts" if masks else None,
        regions=root / "regions" if masks else None,
    )


def synchronise(x: torch.Tensor) -> None:
    """Wait for the device's queued work, so that a timing on a GPU covers it."""
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)


def bare_forward_backward(module: torch.nn.Module, batches: list[torch.Tensor]) -> float:
    """Seconds of the input gradient of the predicted logit on ``batches`` (already on the
    module's device): the least any gradient saliency run can cost."""
    synchronise(batches[0])
    start = time.perf_counter()
    for x in batches:
        x = x.clone().requires_grad_(True)
        logits = module(x)
        chosen = logits.gather(1, logits.argmax(dim=1, keepdim=True)).sum()
        torch.autograd.grad(chosen, x)
    synchronise(batches[0])
    return time.perf_counter() - start


def audit_run(classifier, root: Path, out: Path, methods: list[str], batch_size: int, randomization_images: int = 0, masks: bool = True):
    """Seconds for ``run_audit`` (the randomisation check off unless asked), and its results."""
    from audit.pipeline import RunConfig, run_audit

    dataset = open_data(classifier, root, masks)
    config = RunConfig(methods=methods, batch_size=batch_size, randomization_images=randomization_images, device=str(classifier.device))
    start = time.perf_counter()
    results = run_audit(classifier, dataset, config, out)
    return time.perf_counter() - start, results


def saliency_alone(classifier, root: Path, batch_size: int, workers: int | None = None) -> float:
    """Seconds to stream the same data (read as the run reads it, ``stream_batches``) through
    the forward pass and the gradient maps only."""
    from audit.data.loading import stream_batches
    from audit.pipeline import SharedGradient
    from audit.saliency import methods

    gradient = methods.get("gradient")()
    dataset = open_data(classifier, root)
    start = time.perf_counter()
    for batch in stream_batches(dataset, batch_size, workers=workers, pin_memory=classifier.device.type == "cuda"):
        x = classifier.to_input(batch.images)
        shared = SharedGradient(classifier, x)
        target = classifier.probabilities(shared.logits).argmax(dim=1)
        gradient.from_input_gradient(x, shared.gradient(target))
    return time.perf_counter() - start


def ablation_forwards(classifier, batches, probabilities) -> float:
    """Seconds of the artefact and region ablations alone (mask, normalise, forward) on the
    same batches: the ablation stage (``audit.stages.ablation``) the ablation metric accumulates."""
    from audit.stages.ablation import ablation_columns

    start = time.perf_counter()
    for batch, p in zip(batches, probabilities):
        ablation_columns(batch, classifier, p, p.argmax(axis=1))
    return time.perf_counter() - start


def resnet_128(cache: Path) -> Path:
    """A ResNet-style 1×128×128 classifier (4 stages, 32→256 channels), random weights, as ONNX."""
    import warnings

    from torch import nn

    path = cache / "resnet128.onnx"
    if path.exists():
        return path

    def block(cin: int, cout: int, stride: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
        )

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 7, 2, 3, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
        block(32, 32, 1), block(32, 64, 2), block(64, 128, 2), block(128, 256, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 2),
    ).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.rand(2, 1, 128, 128),), str(path), dynamo=False,
                          input_names=["x"], dynamic_axes={"x": {0: "n"}})
    return path


def timings(classifier, root: Path, batch_size: int, repeats: int, cache: Path) -> dict[str, float]:
    """Best of ``repeats`` interleaved runs, in seconds, on the images under ``root``: the bare
    forward+backward (batches already on the device), ``audit run --method gradient`` without
    masks and with every metric, saliency alone, the ablation's forward passes; and ``images``."""
    loaded = list(open_data(classifier, root).batches(batch_size))
    batches = [classifier.to_input(b.images) for b in loaded]
    with torch.no_grad():
        probabilities = [classifier.probabilities(classifier.logits(x)).cpu().numpy() for x in batches]
    module = classifier.differentiable
    bare_forward_backward(module, batches[:3])  # warm-up
    audit_run(classifier, root, cache / "warmup", ["gradient"], batch_size)
    bare, plain, audited, alone, ablated = [], [], [], [], []
    for _ in range(repeats):  # interleaved, best of each
        bare.append(bare_forward_backward(module, batches))
        plain.append(audit_run(classifier, root, cache / "plain", ["gradient"], batch_size, masks=False)[0])
        audited.append(audit_run(classifier, root, cache / "run", ["gradient"], batch_size)[0])
        alone.append(saliency_alone(classifier, root, batch_size))
        ablated.append(ablation_forwards(classifier, loaded, probabilities))
    return {"images": sum(len(b) for b in loaded), "bare": min(bare), "plain": min(plain), "audited": min(audited),
            "alone": min(alone), "ablated": min(ablated)}


def throughput(args: argparse.Namespace, model: Path) -> dict:
    from audit.models.loader import load_classifier

    classifier = load_classifier(model)
    root = dataset_with(args.images, args.cache)
    t = timings(classifier, root, args.batch_size, args.repeats, args.cache)
    images, bare, plain, audited, alone, ablated = (t[k] for k in ("images", "bare", "plain", "audited", "alone", "ablated"))
    _, results = audit_run(classifier, root, args.cache / "randomised", ["gradient"], args.batch_size, randomization_images=32)
    randomization = results["methods"]["gradient"]["randomization"]
    return {
        "gradient_throughput": {
            "images": images,
            "bare_images_per_s": round(images / bare, 1),
            "audit_images_per_s": round(images / plain, 1),
            "ratio": round(bare / plain, 3),
            "goal": ">= 0.9",
        },
        "metrics_cost": {
            "saliency_alone_images_per_s": round(images / alone, 1),
            "audit_images_per_s": round(images / audited, 1),
            "ratio": round(audited / alone, 3),
            "goal": "<= 1.10",
            "ablation_forwards_s": round(ablated, 2),
            "ratio_without_ablation_forwards": round((audited - ablated) / alone, 3),
        },
        "randomization": {
            "layers": len(randomization["layers"]),
            "images": randomization["images"],
            "seconds_per_layer_per_image": randomization["seconds_per_layer_per_image"],
        },
    }


SAMPLE_MODEL_NOTE = (
    "reported without a goal: decoding one 28x28 PNG (43-60 us in Pillow) plus the run's own per-image "
    "work cost about as much as this model's whole forward+backward (0.16-0.19 ms an image); the goals "
    "are measured on 224 px models by tests/bench/scale_bench.py"
)


def without_goals(report: dict) -> dict:
    """The 28×28 sample model's figures, without the goals (``SAMPLE_MODEL_NOTE`` says why)."""
    for part in report.values():
        part.pop("goal", None)
    return {"note": SAMPLE_MODEL_NOTE, **report}


def peak_memory_child(args: argparse.Namespace) -> None:
    from audit.models.loader import load_classifier

    classifier = load_classifier(args.model)
    audit_run(classifier, dataset_with(args.images, args.cache), args.cache / f"mem-{args.images}", ["gradient"], args.batch_size, 32)
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def peak_memory(args: argparse.Namespace, images: int) -> float:
    dataset_with(images, args.cache)
    command = [sys.executable, __file__, "--child-memory", "--images", str(images), "--model", str(args.model), "--cache", str(args.cache)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])["peak_rss_mb"]


def main() -> None:
    from audit.allocator import reuse_freed_memory

    reuse_freed_memory()  # as the command line does
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--model", type=Path, default=ROOT / "sample_models" / "biased.onnx")
    parser.add_argument("--cache", type=Path, default=ROOT / "bench-out")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child-memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.child_memory:
        peak_memory_child(args)
        return
    args.cache.mkdir(parents=True, exist_ok=True)
    report = {"sample_model_28px": without_goals(throughput(args, args.model))}
    report["resnet_128px"] = throughput(args, resnet_128(args.cache))
    small, large = max(50, args.images // 10), max(500, args.images)
    memory_small, memory_large = peak_memory(args, small), peak_memory(args, large)
    report["peak_memory"] = {
        f"{small}_images_mb": round(memory_small, 1),
        f"{large}_images_mb": round(memory_large, 1),
        "ratio": round(memory_large / memory_small, 3),
        "goal": "flat (ratio close to 1)",
    }
    print(json.dumps(report, indent=2))
    (args.cache / "bench.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
