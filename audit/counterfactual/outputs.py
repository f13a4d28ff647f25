"""``audit counterfactual`` for a whole dataset: per image a GIF, a PNG strip and the maps (NPY);
one CSV row per image, streamed; a summary JSON with f(x) against f(D(E(x))) (Cohen et al. 2021,
Appendix K) and the accuracy on originals against reconstructions.

Layout of ``out``: ``gifs/<image>.gif``, ``strips/<image>.png``, ``maps/<image>.<map>.npy``
(``<image>`` is the image's path relative to the dataset, without extension; a manifest path
that is absolute or climbs out with ``..`` becomes ``outside/<n>-<file name>``, n its row in
the run, so no output ever lands outside ``out``),
``counterfactuals.csv`` (written as ``counterfactuals.partial.csv`` and renamed when the run
ends, so rows already written survive an error) and ``summary.json`` (written atomically).
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import numpy as np
from torch import nn

from audit.counterfactual.explain import Explanation, ShiftOptions, explain_batch
from audit.counterfactual.frames import render
from audit.counterfactual.gif import write_gif, write_strip
from audit.counterfactual.maps import MAPS
from audit.counterfactual.storage import atomic_write
from audit.data.batch import Batch
from audit.data.dataset import Dataset
from audit.models.classifier import Classifier
from audit.report.output_folder import safe_relative
from audit.target import Target

#: What ``audit counterfactual`` writes in OUT besides summary.json.
COUNTERFACTUAL_OUTPUTS = ("gifs", "strips", "maps", "counterfactuals.csv", "counterfactuals.partial.csv")

COLUMNS = [
    "path", "label", "target", "status", "lambda_low", "lambda_high", "stop_low", "stop_high",
    "p_original", "p_start", "p_end", "pixel_change", "class_original", "class_reconstruction",
]


def targets_for(classifier: Classifier, batch: Batch, target: Target) -> np.ndarray:
    """The batch's explained classes by ``audit.target``'s rule, the predictions from one forward
    pass (negligible beside the λ search's passes)."""
    predictions = classifier.logits(classifier.to_input(batch.images)).argmax(dim=1).cpu().numpy()
    return target.resolve(batch.paths, batch.labels, predictions)


def _row(e: Explanation, i: int, path: str, label: int) -> dict[str, Any]:
    return {
        "path": path, "label": label, "target": int(e.target[i]), "status": e.status[i],
        "lambda_low": f"{e.lambda_low[i]:g}", "lambda_high": f"{e.lambda_high[i]:g}",
        "stop_low": e.reason_low[i], "stop_high": e.reason_high[i],
        "p_original": f"{e.p_original[i]:.6f}", "p_start": f"{e.p_start[i]:.6f}", "p_end": f"{e.p_end[i]:.6f}",
        "pixel_change": f"{e.pixel_change[i]:.6f}",
        "class_original": int(e.class_original[i]), "class_reconstruction": int(e.class_reconstruction[i]),
    }


def output_stem(path: str, number: int) -> PurePosixPath:
    """The relative stem of an image's outputs: its dataset path without extension when that
    stays inside the folder, else ``outside/<number>-<file name>``."""
    safe = safe_relative(path)
    if safe is None:
        name = PurePosixPath(str(path).replace("\\", "/")).name
        safe = PurePosixPath("outside", f"{number:06d}-{name if name not in ('', '.', '..') else 'image'}")
    return safe.with_suffix("")


def _write_image(e: Explanation, i: int, original: np.ndarray, stem: PurePosixPath, out: Path, name: str) -> None:
    pictures = render(original, e.frames[i], e.predictions[i], e.lambdas[i], name)
    write_gif(pictures, out / "gifs" / stem.with_name(f"{stem.name}.gif"))
    write_strip(pictures, out / "strips" / stem.with_name(f"{stem.name}.png"))
    for map_name, maps in e.maps.items():
        path = out / "maps" / stem.with_name(f"{stem.name}.{map_name}.npy")
        atomic_write(path, lambda f, m=maps[i]: np.save(f, m))


def run_counterfactuals(
    classifier: Classifier,
    autoencoder: nn.Module,
    dataset: Dataset,
    out: Path,
    options: ShiftOptions = ShiftOptions(),
    *,
    target: Target | None = None,
    batch_size: int | None = None,
    on_batch: Callable[[int], None] = lambda n: None,
) -> dict[str, Any]:
    """Explain every image of ``dataset`` for the classes ``target`` resolves (default: the
    predicted ones); write the outputs above and return the summary. ``batch_size`` None:
    ``options.batch_size`` for the model's input shape."""
    target = target or Target("predicted", classifier.num_classes)
    batch_size = batch_size or options.batch_size(classifier.spec.shape)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    partial = out / "counterfactuals.partial.csv"
    sums = {"p_original": [], "p_start": [], "labels": [], "class_original": [], "class_reconstruction": [], "status": []}
    with partial.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        written = 0
        for batch in dataset.batches(batch_size):
            t = targets_for(classifier, batch, target)
            e = explain_batch(classifier, autoencoder, batch.images, t, options)
            for i, path in enumerate(batch.paths):
                name = classifier.class_names[int(e.target[i])]
                _write_image(e, i, batch.images[i].transpose(2, 0, 1), output_stem(path, written), out, name)
                writer.writerow(_row(e, i, path, int(batch.labels[i])))
                written += 1
            handle.flush()
            for key in ("p_original", "p_start", "class_original", "class_reconstruction"):
                sums[key].extend(getattr(e, key).tolist())
            sums["labels"].extend(batch.labels.tolist())
            sums["status"].extend(e.status)
            on_batch(len(batch))
    partial.replace(out / "counterfactuals.csv")
    summary = _summary(classifier, dataset, options, sums, target)
    write_summary(summary, out / "summary.json")
    return summary


def write_summary(summary: dict[str, Any], path: Path) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(summary, indent=2).encode()))


def _accuracy(predicted: np.ndarray, labels: np.ndarray) -> float | None:
    known = labels >= 0
    return float((predicted[known] == labels[known]).mean()) if known.any() else None


def _summary(classifier: Classifier, dataset: Dataset, options: ShiftOptions, sums: dict[str, list], target: Target) -> dict[str, Any]:
    labels = np.asarray(sums["labels"])
    p_original, p_start = np.asarray(sums["p_original"]), np.asarray(sums["p_start"])
    statuses = sums["status"]
    return {
        "schema": "audit.counterfactual/1",
        "model": {"path": str(classifier.path), "sha256": classifier.sha256, "files": classifier.files, "classes": classifier.class_names},
        "data": {"root": dataset.root, "images": len(labels), "skipped": [dataclasses.asdict(s) for s in dataset.skipped]},
        "target": {"option": str(target), "rule": target.describe(classifier.class_names)},
        "search": {**dataclasses.asdict(options.rule), "frames": options.frames, "upper_frames": options.upper_frames, "direction": options.direction},
        "maps": list(MAPS),
        "status": {name: statuses.count(name) for name in sorted(set(statuses))},
        "reconstruction": {
            "mean_p_original": float(p_original.mean()),
            "mean_p_reconstruction": float(p_start.mean()),
            "mean_difference": float((p_original - p_start).mean()),
            "accuracy_original": _accuracy(np.asarray(sums["class_original"]), labels),
            "accuracy_reconstruction": _accuracy(np.asarray(sums["class_reconstruction"]), labels),
            "changed_predictions": float(np.mean(np.asarray(sums["class_original"]) != np.asarray(sums["class_reconstruction"]))),
            "note": "f(x) and f(D(E(x))) for the explained class; counterfactual frames start from D(E(x)); "
                    "changed_predictions: share of images whose predicted class differs on D(E(x))",
        },
    }
