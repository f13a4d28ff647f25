"""The two checks each zoo export must pass: ``audit run`` succeeds, and the library's gradient
maps equal captum's ``Saliency`` on the original eager module.

Relative tolerance, our definition: max |library − reference| ≤ 1e-5 · max |reference| over the
whole batch of maps (the maps' own scale, so that a model with large gradients is not held to a
tighter bound than one with small gradients).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import torch
from captum.attr import Saliency

from tests.models.zoo.architectures import ARCHITECTURES, SIZE, make

RELATIVE_TOLERANCE = 1e-5
METHODS = ("gradient", "grad-cam", "integrated-gradients")


def run_arguments(model: Path, architecture: str, data: Path, out: Path, methods: tuple[str, ...] = METHODS) -> list[str]:
    """``audit run`` as a user of this architecture writes it (TorchScript does not declare its
    input size; a model without a global pooling needs its Grad-CAM layer named)."""
    spec = ARCHITECTURES[architecture]
    args = ["run", str(model), "--data", str(data), "--out", str(out), "--randomization-images", "0", "--quiet"]
    for method in methods:
        args += ["--method", method]
    args += ["-o", "integrated-gradients.n_steps=8"]
    if model.suffix == ".pt":
        args += ["--input-size", str(SIZE), str(SIZE), "--channels", "3"]
    if spec.cam_layer is not None and "grad-cam" in methods:
        args += ["-o", f"grad-cam.layer={spec.cam_layer}"]
    if spec.multilabel:
        args.append("--multilabel")
    return args


def audit_run(model: Path, architecture: str, data: Path, out: Path, methods: tuple[str, ...] = METHODS) -> tuple[int, str]:
    """Exit code and stderr of ``audit run`` in this process."""
    from audit.cli.main import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(run_arguments(model, architecture, data, out, methods))
    return code, err.getvalue()


def write_images(root: Path, n: int = 4, size: int = SIZE) -> Path:
    """``n`` seeded RGB noise images of size × size, in two class folders (as users keep them)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(7)
    for i in range(n):
        folder = root / f"class{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def images(n: int = 3) -> torch.Tensor:
    return torch.rand((n, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(5))


def gradient_error(model: Path, architecture: str) -> tuple[float, float]:
    """(max |library − captum|, max |captum|) for the gradient maps of seeded images, image i
    explaining output i mod outputs (the random models predict one class for most inputs): the
    library's through ``load_classifier`` and the ``gradient`` method, the reference captum
    ``Saliency(abs=True)`` on the eager module, both reduced by the maximum over channels."""
    from audit.models.loader import ModelOptions, load_classifier
    from audit.saliency import methods

    eager = make(architecture)
    x = images()
    with torch.no_grad():
        target = torch.arange(len(x)) % eager(x).shape[1]
    reference = Saliency(eager).attribute(x.clone().requires_grad_(True), target=target, abs=True).amax(dim=1)
    options = ModelOptions(input_size=(SIZE, SIZE), channels=3, multilabel=ARCHITECTURES[architecture].multilabel)
    classifier = load_classifier(model, options)
    maps = methods.get("gradient")().attribute(classifier, x, target)
    return float((maps - reference).abs().max()), float(reference.abs().max())
