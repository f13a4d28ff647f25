"""The randomisation check on wrapped models: a class-map TorchScript model (its ScriptModule
inside the logits-only wrapper takes no hooks) and a graph fixed at a batch of one."""

from __future__ import annotations

import torch

from audit.models.loader import ModelOptions, load_classifier
from audit.saliency import methods
from audit.stages.randomisation import execution_order, randomisation_check
from tests.conftest import TinyCNN
from tests.models.class_map_models import SIZE, build, export


def test_a_class_map_torchscript_model_is_checked_through_its_graph(tmp_path) -> None:
    model = build()
    classifier = load_classifier(export(model, "trace", tmp_path / "m"), ModelOptions(input_size=(SIZE, SIZE), channels=3))
    x = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    order, _ = execution_order(classifier.differentiable, x)
    expected = [name for name, module in model.named_modules() if any(True for _ in module.parameters(recurse=False))]
    assert order == expected  # features.0, features.1 (BatchNorm), features.4, classifier
    result = randomisation_check(classifier, methods.get("gradient")(), x, torch.zeros(3, dtype=torch.int64), name="gradient")
    assert [step["layer"] for step in result["cascading"]] == expected[::-1]


def test_grad_cam_randomisation_on_a_graph_fixed_at_batch_one(tmp_path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "b1.onnx"
    torch.onnx.export(TinyCNN().eval(), (torch.rand(1, 1, 28, 28),), str(path), dynamo=False, input_names=["x"])
    classifier = load_classifier(path)
    assert classifier.batch_limit == 1
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    result = randomisation_check(classifier, methods.get("grad-cam")(), x, torch.zeros(4, dtype=torch.int64), name="grad-cam")
    assert result["images"] == 4 and len(result["cascading"]) == len(result["layers"]) > 0


def test_the_steps_equal_a_fresh_copy_per_step_and_scipy_spearman(tmp_path) -> None:
    """The check re-initialises one copy in place (cascade) and restores layers (independent);
    every step must equal a fresh ``randomised_copy`` of the model, ranked by scipy."""
    import numpy as np
    from scipy import stats

    from audit.stages.randomisation import randomisation_records, randomised_copy, with_module

    torch.manual_seed(0)
    path = tmp_path / "m.onnx"
    torch.onnx.export(TinyCNN().eval(), (torch.rand(2, 1, 28, 28),), str(path), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "n"}})
    classifier = load_classifier(path)
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    target = torch.tensor([0, 1, 0])
    method = methods.get("gradient")()
    records = randomisation_records(classifier, method, x, target, paths=["a", "b", "c"], name="gradient", seed=7)
    order, unused = execution_order(classifier.differentiable, x)
    reference = method.attribute(classifier, x, target).numpy()

    def rho(indices: list[int]) -> list[float]:
        maps = method.attribute(with_module(classifier, randomised_copy(classifier.differentiable, order, indices, 7, unused)),
                                x, target).numpy()
        return [stats.spearmanr(np.abs(a).ravel(), np.abs(b).ravel())[0] for a, b in zip(reference, maps)]

    last = len(order) - 1
    cascading = np.array([rho(list(range(j, last + 1))) for j in range(last, -1, -1)]).T
    independent = np.array([rho([j]) for j in range(len(order))]).T
    assert np.allclose(records["cascading_rho"], cascading, atol=1e-12, equal_nan=True)
    assert np.allclose(records["independent_rho"], independent, atol=1e-12, equal_nan=True)
