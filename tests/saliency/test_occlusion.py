"""occlusion against captum on torch, and forward-only on a real ONNX file through onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from captum.attr import Occlusion

from audit.errors import AuditError
from audit.models.classifier import Classifier
from audit.saliency import methods

from tests.saliency.small_models import SIZE, make_case


def captum_occlusion(module, x, target, window: int, stride: int):
    channels = x.shape[1]
    attribution = Occlusion(module).attribute(
        x,
        sliding_window_shapes=(channels, window, window),
        strides=(channels, stride, stride),
        baselines=0.0,
        target=target,
        perturbations_per_eval=32,
    )
    return attribution.sum(1).numpy()


def test_defaults_are_an_eighth_and_a_sixteenth_of_the_side(case):
    expected = captum_occlusion(case.module, case.x, case.target, window=SIZE // 8, stride=1)
    maps = methods.get("occlusion")().attribute(case.model, case.x, case.target)
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-5)


def test_window_and_stride_fractions(case):
    expected = captum_occlusion(case.module, case.x, case.target, window=4, stride=2)
    method = methods.get("occlusion")(window=0.25, stride=0.125, perturbations_per_eval=5)
    maps = method.attribute(case.model, case.x, case.target)
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "options", [dict(window=0.0), dict(stride=1.5), dict(perturbations_per_eval=0)]
)
def test_bad_options(options):
    with pytest.raises(AuditError):
        methods.get("occlusion")(**options)


def onnx_classifier(module, channels: int, classes: int, path: Path, batch_sizes: list[int]):
    """A Classifier with only the forward-only path: an onnxruntime session, no torch twin."""
    torch.onnx.export(
        module,
        (torch.zeros(1, channels, SIZE, SIZE),),
        str(path),
        dynamo=False,
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
    )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def forward(x: torch.Tensor) -> torch.Tensor:
        batch_sizes.append(len(x))
        return torch.from_numpy(session.run(None, {"x": x.numpy()})[0])

    def no_twin() -> torch.nn.Module:
        raise AuditError("no differentiable twin in this test")

    return Classifier(
        path=path,
        format="onnx",
        sha256="",
        spec=make_case(channels, classes).model.spec,
        multilabel=False,
        class_names=[f"class{k}" for k in range(classes)],
        forward_fn=forward,
        build_differentiable=no_twin,
        provider="CPUExecutionProvider",
    )


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("channels, classes", [(1, 2), (3, 3)])
def test_onnxruntime_matches_captum_on_torch(tmp_path, channels, classes):
    case = make_case(channels, classes)
    batch_sizes: list[int] = []
    model = onnx_classifier(case.module, channels, classes, tmp_path / "m.onnx", batch_sizes)
    method = methods.get("occlusion")(window=0.25, stride=0.125, perturbations_per_eval=8)
    maps = method.attribute(model, case.x, case.target)
    assert isinstance(maps, torch.Tensor) and maps.dtype == torch.float32
    expected = captum_occlusion(case.module, case.x, case.target, window=4, stride=2)
    np.testing.assert_allclose(maps.numpy(), expected, rtol=1e-4, atol=1e-4)
    assert maps.shape == (len(case.x), SIZE, SIZE)
    assert max(batch_sizes) == 8 * len(case.x)  # occluded copies are batched
    assert model._differentiable is None
