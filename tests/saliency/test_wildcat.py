"""The ``wildcat`` method: the target's class map of a class-map model, upsampled as Grad-CAM's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from audit.cli.main import main
from audit.errors import AuditError
from audit.models.loader import load_classifier
from audit.saliency import methods
from audit.stages.randomisation import execution_order, randomisation_check, randomised_copy, with_module
from tests.models.class_map_models import SIZE, build, export

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return export(build(), "onnx-legacy", tmp_path_factory.mktemp("wildcat") / "wildcat")


def reference(maps: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """torch's float64 bilinear upsampling (align_corners=False) of the target's map minus its minimum."""
    cam = maps.double()[torch.arange(len(target)), target][:, None]
    cam = cam - cam.amin((2, 3), keepdim=True)
    return F.interpolate(cam, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[:, 0]


def test_the_map_is_the_upsampled_class_map_of_the_target(onnx_model):
    x = torch.rand(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    target = torch.tensor([0, 2, 1, 2])
    with torch.no_grad():
        _, maps = build()(x)
    got = methods.get("wildcat")().attribute(load_classifier(onnx_model), x, target)
    assert got.shape == (4, SIZE, SIZE) and got.dtype == torch.float32 and float(got.min()) >= 0
    torch.testing.assert_close(got.double(), reference(maps, target), atol=1e-5, rtol=1e-5)
    assert int(got[1].flatten().argmax()) == int(reference(maps, target)[1].flatten().argmax())


def test_a_model_without_class_maps_is_refused(tiny_model_files):
    model = load_classifier(tiny_model_files["onnx"])
    with pytest.raises(AuditError, match=f"--method wildcat: {model.path} has no class-map output; build one "
                                         f"with `audit wildcat`"):
        methods.get("wildcat")().prepare(model)


def test_randomised_weights_give_the_randomised_class_maps(onnx_model):
    classifier, method = load_classifier(onnx_model), methods.get("wildcat")()
    x = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    target = torch.tensor([0, 1, 2])
    original = classifier.differentiable
    order, unused = execution_order(original, x)
    randomised = randomised_copy(original, order, [len(order) - 1], 0, unused)  # the 1×1 convolution
    with torch.no_grad():
        expected = reference(randomised.model(x)[1], target)
    got = method.attribute(with_module(classifier, randomised), x, target)
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-5)
    assert (got - method.attribute(classifier, x, target)).abs().max() > 1e-3
    check = randomisation_check(classifier, method, x, target, name="wildcat", independent=False)
    assert check["cascading"][-1]["spearman"] < 0.9


def test_audit_run_compares_wildcat_with_post_hoc_methods(onnx_model, tmp_path):
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(tmp_path / "data" / label / f"{i}.png")
    code = main(["run", str(onnx_model), "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--quiet",
                 "--method", "wildcat", "--method", "gradient", "--method", "grad-cam", "--randomization-images", "2"])
    assert code == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(results["methods"]) == {"wildcat", "gradient", "grad-cam"}
    assert results["methods"]["wildcat"]["signed"] is False
