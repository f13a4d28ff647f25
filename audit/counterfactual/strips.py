"""Latent Shift strips for the PDF report, computed once after ``audit run`` so that the report
never needs the model: for the few images whose map is most concentrated on the artefact
(``maps/<method>.npz``, group ``most_artefact_salient``), the frames x_λ from λ = 0 down to
λ_low, the classifier's prediction on each, and the method's map (Cohen et al. 2021, §3).

``OUT/counterfactuals/strips.npz`` holds, for n images and F frames (λ descending, frame 0 is
λ = 0, i.e. the reconstruction D(E(x)); frame F − 1 is λ_low, the counterfactual):

- ``images`` (n, H, W, C) the inputs x in [0, 1]; ``frames`` (n, F, H, W, C) as decoded
- ``lambdas`` (n, F); ``predictions`` (n, F) f(x_λ) for the target class; ``p_original`` (n,) f(x)
- ``maps`` (n, H, W) the method's map; ``artefact``, ``region`` (n, H, W) the masks
- ``paths``, ``labels``, ``targets`` (class indices), ``target_names`` and ``status`` (n,):
  reached / partial / unchanged (``explain.py``)
- ``method``, ``map``, ``model_sha256`` (scalars), so the report can tell a stale file.

Only numpy is imported at module level (the report reads ``STRIPS`` and ``latentshift_method``).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audit.counterfactual.maps import MAPS
from audit.errors import AuditError

if TYPE_CHECKING:
    from audit.models.classifier import Classifier
    from audit.target import Target

PREFIX = "latentshift-"
GROUP = "most_artefact_salient"
STRIPS = Path("counterfactuals") / "strips.npz"


def latentshift_method(names: list[str] | dict[str, Any]) -> str | None:
    """The first Latent Shift method among ``names`` (method names, or results' ``methods``)."""
    return next((name for name in names if str(name).startswith(PREFIX) and name[len(PREFIX) :] in MAPS), None)


def save_strips(
    classifier: Classifier,
    method_options: dict[str, Any],
    examples_npz: Path,
    out: Path,
    count: int = 4,
    *,
    target: Target | None = None,
) -> Path | None:
    """Explain the first ``count`` most artefact-salient images of ``examples_npz`` with the Latent
    Shift method whose options (``autoencoder``, ``rule``, thresholds, ``frames``…) are
    ``method_options``, for the classes ``target`` (``audit run``'s; default: predicted)
    resolves from the images' labels and predictions, and write the strips to ``out``
    (atomically). The map is the one named by the file (``maps/latentshift-mean.npz`` → mean;
    max otherwise). Returns ``out``, or None (removing a stale ``out``) when the examples file
    holds no such image (no artefact masks)."""
    from audit.counterfactual.explain import explain_batch
    from audit.counterfactual.method import checked_autoencoder
    from audit.counterfactual.storage import atomic_write
    from audit.saliency import methods
    from audit.target import Target

    examples_npz, out = Path(examples_npz), Path(out)
    method = examples_npz.stem if latentshift_method([examples_npz.stem]) else f"{PREFIX}max"
    shift = methods.get(method)(**method_options)  # validates the options as `audit run` does
    try:
        with np.load(examples_npz, allow_pickle=False) as data:
            group = {key: data[f"{GROUP}/{key}"] for key in ("image", "path", "label", "prediction", "artefact", "region")}
    except FileNotFoundError:
        out.unlink(missing_ok=True)
        return None
    except (OSError, KeyError, ValueError) as exc:
        raise AuditError(f"{examples_npz}: unreadable examples ({type(exc).__name__}); rerun `audit run`") from exc
    n = min(count, len(group["path"]))
    if n == 0 or group["image"].ndim != 4:
        out.unlink(missing_ok=True)
        return None
    images = group["image"][:n].astype(np.float32)
    labels, predictions = group["label"][:n].astype(np.int64), group["prediction"][:n].astype(np.int64)
    target = target or Target("predicted", classifier.num_classes)
    targets = target.resolve(list(group["path"][:n].astype(str)), labels, predictions)
    autoencoder = checked_autoencoder(shift.autoencoder, classifier.spec.shape)
    e = explain_batch(classifier, autoencoder, images, targets, shift.options, maps=(shift.map,))
    order = np.arange(e.zero, -1, -1)  # λ = 0 first, down to λ_low
    frames = e.frames[:, order].transpose(0, 1, 3, 4, 2)  # (n, F, C, H, W) → (n, F, H, W, C)
    names = [classifier.class_names[t] if 0 <= t < len(classifier.class_names) else str(t) for t in e.target]
    arrays = {
        "images": images,
        "frames": frames.astype(np.float32),
        "lambdas": e.lambdas[:, order].astype(np.float32),
        "predictions": e.predictions[:, order].astype(np.float32),
        "p_original": e.p_original.astype(np.float32),
        "maps": e.maps[shift.map].astype(np.float32),
        "artefact": group["artefact"][:n].astype(bool),
        "region": group["region"][:n].astype(bool),
        "paths": group["path"][:n].astype(str),
        "labels": labels,
        "targets": e.target.astype(np.int64),
        "target_names": np.array(names, dtype=str),
        "status": np.array(e.status, dtype=str),
        "method": np.array(method),
        "map": np.array(shift.map),
        "model_sha256": np.array(str(classifier.sha256 or "")),
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write(out, lambda f: f.write(buffer.getvalue()))
    return out
