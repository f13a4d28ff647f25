"""The GPU paths against the CPU: each check runs the same work with ``--device cuda`` and
``--device cpu`` and compares, one line per check (``PASS``/``FAIL name: measured (tolerance)``).
Exit status 1 when a check fails; 0 with "no GPU: skipped" where torch sees no GPU
(``tests/bench/gpu.sh`` runs it; CI has no GPU).

Checks, on the trained 28×28 sample model (biased.pt2: the torch.export module tree; biased.onnx:
the ONNX twin and onnxruntime) and 16 synthetic images, TF32 off so that CUDA computes in float32:
- every built-in CNN method's maps, cuda against cpu: max |Δ| / max |map_cpu| ≤ 1e-3;
- ``run_audit`` end to end (gradient, grad-cam): the same predictions, enrichment within 1e-4
  relative; bf16 and fp16 on the GPU reported against fp32 (predictions the same, enrichment
  within 1%, the bound measured for bf16 on the CPU);
- the ONNX model on cuda: onnxruntime's provider (CUDA with onnxruntime-gpu), its logits on the
  device and within 1e-4 of the CPU's, the twin's within the twin tolerance;
- the metric kernels on 64 maps of 224×224 with ties on the GPU (``device_kernels``) against the
  host's numpy (``host_kernels``): every per-image column within 1e-12; both times printed;
- Latent Shift (sample autoencoder): λ_low and p_end within 1e-3;
- one actdiff fine-tuning step from the same weights: loss within 1e-4 relative, updated
  weights within 1e-4.

Usage: python tests/bench/gpu_checks.py
"""

from __future__ import annotations

import copy
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
SAMPLES = ROOT / "sample_models"
METHODS = {"gradient": {}, "input-x-gradient": {}, "integrated-gradients": {"n_steps": 16},
           "smoothgrad": {"samples": 8}, "smoothgrad-ig": {"samples": 2, "n_steps": 8}, "grad-cam": {},
           "guided-backprop": {}, "guided-grad-cam": {}, "competitive-gxi": {}, "occlusion": {}}
failures: list[str] = []


def report(name: str, measured: float, tolerance: float, note: str = "") -> None:
    ok = bool(measured <= tolerance)
    if not ok:
        failures.append(name)
    print(f"{'PASS' if ok else 'FAIL'} {name}: {measured:.3g} (tolerance {tolerance:g}){' ' + note if note else ''}", flush=True)


def relative(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(got - expected).max() / max(float(np.abs(expected).max()), 1e-12))


def load(name: str, device: str):
    from audit.models.loader import ModelOptions, load_classifier

    return load_classifier(SAMPLES / name, ModelOptions(device=torch.device(device)))


def dataset(valid: Path):
    from audit.data.dataset import open_dataset

    return open_dataset(valid / "images", size=(28, 28), channels=1, masks=valid / "artefacts", regions=valid / "regions")


def check_methods(batch) -> None:
    """Every method on both formats; a method a model cannot take (guided backprop needs
    nn.ReLU modules, which an exported program's functional ReLUs are not) is skipped."""
    from audit.errors import AuditError
    from audit.metrics.tensors import host_maps
    from audit.saliency import methods

    for model in ("biased.pt2", "biased.onnx"):
        maps = {}
        for device in ("cpu", "cuda"):
            classifier = load(model, device)
            x = classifier.to_input(batch.images)
            target = torch.zeros(len(x), dtype=torch.int64, device=x.device)
            for name, options in METHODS.items():
                method = methods.get(name)(**options)
                try:
                    method.prepare(classifier)
                    maps[name, device] = host_maps(method.attribute(classifier, x, target))
                except AuditError as exc:
                    maps[name, device] = str(exc)
        for name in METHODS:
            if isinstance(maps[name, "cpu"], str):
                print(f"SKIP method {name} on {model}: {maps[name, 'cpu']}", flush=True)
                continue
            report(f"method {name} on {model} cuda vs cpu", relative(maps[name, "cuda"], maps[name, "cpu"]), 1e-3)


def check_run(valid: Path, out: Path) -> None:
    from audit.pipeline import RunConfig, run_audit

    results, predictions = {}, {}
    for device, precision in (("cpu", "fp32"), ("cuda", "fp32"), ("cuda", "bf16"), ("cuda", "fp16")):
        config = RunConfig(methods=["gradient", "grad-cam"], batch_size=8, randomization_images=4, device=device,
                           precision=precision)
        folder = out / f"{device}-{precision}"
        results[device, precision] = run_audit(load("biased.pt2", device), dataset(valid), config, folder)
        predictions[device, precision] = np.loadtxt(folder / "per_image.csv", delimiter=",", skiprows=1, usecols=2,
                                                    dtype=str)
    for key, tolerance in ((("cuda", "fp32"), 1e-4), (("cuda", "bf16"), 1e-2), (("cuda", "fp16"), 1e-2)):
        same = bool((predictions[key] == predictions["cpu", "fp32"]).all())
        report(f"run {key[0]} {key[1]}: predictions equal the cpu fp32 run", 0.0 if same else 1.0, 0.0)
        for method in ("gradient", "grad-cam"):
            got, expected = (results[k]["methods"][method]["artefact"]["enrichment"]["overall"] for k in (key, ("cpu", "fp32")))
            report(f"run {key[0]} {key[1]}: {method} enrichment vs cpu fp32", abs(got - expected) / abs(expected), tolerance)


def check_metric_kernels(batch) -> None:
    import time

    from audit.metrics.base import MapBatch
    from audit.metrics.suite import MethodMetrics

    rng = np.random.default_rng(0)
    n, side = 64, 224
    maps = rng.normal(size=(n, side, side)).astype(np.float32)
    maps[::4] = np.round(maps[::4] * 2) / 2  # bit-equal pixels: the tie rules decide
    artefact, region = rng.random((2, n, side, side)) < 0.2
    columns, seconds = {}, {}
    for device in ("cpu", "cuda"):
        metrics = MethodMetrics(["a", "b"])
        tensor = torch.from_numpy(maps).to(device)
        torch.cuda.synchronize()
        start = time.perf_counter()
        metrics.update(MapBatch.from_predictions([f"{i}" for i in range(n)], np.zeros(n, int), np.zeros(n, int),
                                                 np.full(n, 0.9), tensor, artefact, region, np.ones(n, bool),
                                                 np.ones(n, bool)))
        seconds[device] = time.perf_counter() - start
        columns[device] = metrics.per_image()
    worst = max(float(np.nanmax(np.abs(np.subtract(columns["cuda"][c], columns["cpu"][c])))) for c in columns["cpu"])
    report("metric kernels cuda vs numpy (64 maps of 224x224)", worst, 1e-12,
           f"(cpu {seconds['cpu'] * 1000:.0f} ms, cuda {seconds['cuda'] * 1000:.0f} ms per batch, first call)")


def check_onnx(batch) -> None:
    from audit.models.loader import twin_tolerance

    cpu, cuda = load("biased.onnx", "cpu"), load("biased.onnx", "cuda")
    print(f"INFO onnxruntime provider on cuda: {cuda.provider}", flush=True)
    x = cuda.to_input(batch.images)
    logits = cuda.logits(x)
    report("onnx logits stay on the device", 0.0 if logits.device.type == "cuda" else 1.0, 0.0)
    expected = cpu.logits(cpu.to_input(batch.images))
    report("onnx logits cuda vs cpu", float((logits.cpu() - expected).abs().max()), 1e-4)
    with torch.no_grad():
        twin = cuda.differentiable(x).float().cpu()
    scale = float(expected.abs().max())
    report("onnx twin on cuda vs onnxruntime on cpu", float((twin - expected).abs().max()), twin_tolerance(scale))


def check_counterfactual(batch) -> None:
    from audit.counterfactual.explain import explain_batch
    from audit.counterfactual.storage import load_autoencoder

    found = {}
    for device in ("cpu", "cuda"):
        found[device] = explain_batch(load("biased.pt2", device), load_autoencoder(SAMPLES / "autoencoder.pt"),
                                      batch.images[:4])
    report("latent shift lambda_low cuda vs cpu", float(np.abs(found["cuda"].lambda_low - found["cpu"].lambda_low).max()), 1e-3)
    report("latent shift p_end cuda vs cpu", float(np.abs(found["cuda"].p_end - found["cpu"].p_end).max()), 1e-3)


def check_finetune(batch) -> None:
    from audit.finetune.layers import FEATURES, LayerTaps
    from audit.finetune.losses import Step, losses
    from audit.finetune.masking import scrambled_pixels

    start = load("biased.pt2", "cpu").layered
    scrambled, has_mask = scrambled_pixels(batch, "regions")
    out = {}
    for device in ("cpu", "cuda"):
        classifier = load("biased.pt2", device)
        model = copy.deepcopy(start).to(device).train()
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
        step = Step(model, classifier.to_input(batch.images), torch.from_numpy(batch.labels).to(device),
                    scrambled.to(device), has_mask.to(device), LayerTaps(model, [FEATURES]),
                    generator=torch.Generator().manual_seed(0))
        terms = losses.get("actdiff")(step)
        terms["total"].backward()
        optimiser.step()
        out[device] = (float(terms["total"].detach()), torch.cat([p.detach().flatten().cpu() for p in model.parameters()]))
    report("finetune actdiff loss cuda vs cpu", abs(out["cuda"][0] - out["cpu"][0]) / abs(out["cpu"][0]), 1e-4)
    report("finetune updated weights cuda vs cpu", float((out["cuda"][1] - out["cpu"][1]).abs().max()), 1e-4)


def main() -> int:
    if not torch.cuda.is_available():
        print("no GPU: skipped")
        return 0
    from audit.data.synthetic import make_synthetic

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print(f"INFO GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        valid = make_synthetic(Path(folder) / "data", seed=0, n_train=2, n_valid=16, n_test=2) / "valid"
        batch = next(iter(dataset(valid).batches(16)))
        for check in (check_methods, check_metric_kernels, check_onnx, check_counterfactual, check_finetune):
            check(batch)
        check_run(valid, Path(folder) / "runs")
    print(f"{len(failures)} check(s) failed: {', '.join(failures)}" if failures else "all GPU checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
