import copy

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

import audit.saliency  # noqa: F401  (registers the built-in methods)
from audit.errors import AuditError
from audit.metrics.randomisation import SANITY_THRESHOLD, RandomisationCheck, sanity
from audit.models.classifier import from_module
from audit.models.spec import InputSpec
from audit.saliency import methods
from audit.saliency.base import SaliencyMethod
from audit.stages.randomisation import execution_order, map_spearman, randomisation_check, randomisation_records
from tests.conftest import export_onnx

SPEC = InputSpec(1, 16, 16)
LAYERS = ["features.0", "features.1", "features.3", "head"]


class SmallCNN(nn.Module):
    """Conv-BN-ReLU-Conv-ReLU-pool-Linear, 1×16×16 → 2 logits. Two channels before the head, so
    that re-initialising the head alone keeps much of the map (and the fall after it shows)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                                      nn.Conv2d(6, 2, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def trained_cnn() -> nn.Module:
    """SmallCNN with BatchNorm parameters and statistics away from their initial values."""
    torch.manual_seed(100)
    module = SmallCNN()
    with torch.no_grad():
        bn = module.features[1]
        bn.running_mean.normal_(0.0, 0.3)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_(0.0, 0.3)
    return module.eval()


def inputs(n: int = 4) -> torch.Tensor:
    return torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(5))


def state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def check(module=None, method="gradient", n=4, **options):
    classifier = from_module(module if module is not None else trained_cnn(), SPEC, ["a", "b"])
    x = inputs(n)
    target = classifier.logits(x).argmax(1)
    m = methods.get(method)() if isinstance(method, str) else method
    return classifier, x, target, randomisation_check(classifier, m, x, target, name="m", **options)


def test_cascading_gradient_correlation_falls_and_excludes_the_unrandomised_step():
    _, _, _, result = check()
    assert result["layers"] == LAYERS
    cascading = [entry["spearman"] for entry in result["cascading"]]
    assert [entry["layer"] for entry in result["cascading"]] == LAYERS[::-1]
    assert len(cascading) == 4 and max(cascading) < 0.99  # no unrandomised ≈ 1 entry
    assert cascading[-1] < cascading[0] - 0.2
    assert [entry["layer"] for entry in result["independent"]] == LAYERS
    for entry in result["cascading"] + result["independent"]:
        assert entry["n"] == 4 and entry["constant_maps"] == 0
        assert entry["ci95"][0] < entry["spearman"] < entry["ci95"][1]
    assert result["images"] == 4 and result["seconds_per_layer_per_image"] > 0


def test_the_callers_model_and_rng_are_unchanged():
    module = trained_cnn()
    before = state(module)
    rng = torch.random.get_rng_state()
    classifier, _, _, _ = check(module)
    assert classifier.differentiable is module and classifier.forward_fn is module
    after = state(module)
    assert before.keys() == after.keys()
    for key in before:
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=0)
    assert torch.equal(torch.random.get_rng_state(), rng)


class Spy(SaliencyMethod):
    """Gradient maps; records which layers differ from the original and checks that the
    forward-only path is the randomised model."""

    def __init__(self, original: nn.Module) -> None:
        self.original = state(original)
        self.changed: list[set[str]] = []

    def attribute(self, model, x, target):
        module = model.differentiable
        torch.testing.assert_close(model.logits(x), module(x).detach(), rtol=0, atol=0)
        now = state(module)
        self.changed.append({k.rsplit(".", 1)[0] for k in now
                             if not torch.equal(now[k], self.original[k])})
        return methods.get("gradient")().attribute(model, x, target)


def test_each_step_randomises_exactly_the_expected_layers():
    module = trained_cnn()
    spy = Spy(module)
    check(module, method=spy)
    original, cascading, independent = spy.changed[0], spy.changed[1:5], spy.changed[5:]
    assert original == set() and len(spy.changed) == 9
    assert cascading == [set(LAYERS[j:]) for j in (3, 2, 1, 0)]
    assert independent == [{layer} for layer in LAYERS]


def test_step_equals_a_hand_randomised_model_and_scipy():
    module = trained_cnn()
    classifier, x, target, result = check(module, seed=3)
    gradient = methods.get("gradient")()
    reference = gradient.attribute(classifier, x, target)
    hand = copy.deepcopy(module)
    torch.manual_seed(3 + 3)  # seed + execution index of the head
    hand.head.reset_parameters()
    maps = gradient.attribute(from_module(hand, SPEC, ["a", "b"]), x, target)
    rho = [stats.spearmanr(np.abs(a).ravel(), np.abs(b).ravel())[0] for a, b in zip(reference, maps)]
    assert result["cascading"][0]["spearman"] == pytest.approx(np.mean(rho), abs=1e-12)
    assert result["independent"][3]["spearman"] == pytest.approx(np.mean(rho), abs=1e-12)
    assert result["cascading"][0]["std"] == pytest.approx(np.std(rho, ddof=1), abs=1e-12)


def test_map_spearman_matches_scipy_on_absolute_values_and_rejects_constant_maps():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 7))
    b = np.round(a + rng.normal(size=(6, 7)), 1)  # ties
    assert map_spearman(a, b) == pytest.approx(
        stats.spearmanr(np.abs(a).ravel(), np.abs(b).ravel())[0], abs=1e-12)
    assert np.isnan(map_spearman(a, np.full((6, 7), 2.0)))
    assert np.isnan(map_spearman(np.zeros((6, 7)), b))


class Reordered(nn.Module):
    """Registration order (head, unused, norm, conv) differs from execution order."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3, 2)
        self.unused = nn.Linear(3, 3)
        self.norm = nn.BatchNorm2d(3, affine=False)  # running statistics only
        self.act = nn.ReLU()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)

    def forward(self, x):
        return self.head(self.act(self.norm(self.conv(x))).mean(dim=(2, 3)))


def test_layer_order_is_execution_order_not_registration_order():
    module = Reordered().eval()
    assert [n for n, _ in module.named_modules() if n] == ["head", "unused", "norm", "act", "conv"]
    assert execution_order(module, inputs()) == (["conv", "norm", "head"], ["unused"])
    _, _, _, result = check(module, independent=False)
    assert [e["layer"] for e in result["cascading"]] == ["head", "norm", "conv"]
    assert result["not_executed"] == ["unused"] and result["independent"] == []


def test_deterministic_given_the_seed():
    drop = lambda r: {k: v for k, v in r.items() if k != "seconds_per_layer_per_image"}  # noqa: E731
    first, second, other = (drop(check(seed=s)[3]) for s in (1, 1, 2))
    assert first == second
    assert first["cascading"] != other["cascading"]


class ConstantFirst(SaliencyMethod):
    """Gradient maps, except the first map of each call is all zeros."""

    def attribute(self, model, x, target):
        maps = methods.get("gradient")().attribute(model, x, target)
        maps[0] = 0.0
        return maps


def test_constant_maps_are_excluded_and_counted():
    # Only the head: re-initialising a conv can also make a map constant (all ReLUs off).
    # batch_size 3: two calls per step (images 0-2, 3), so images 0 and 3 are constant.
    _, _, _, result = check(method=ConstantFirst(), batch_size=3, layers=["head"])
    assert len(result["cascading"]) == len(result["independent"]) == 1
    for entry in result["cascading"] + result["independent"]:
        assert entry["constant_maps"] == 2 and entry["n"] == 2


def test_layers_option_and_errors():
    _, _, _, result = check(layers=["head", "features.0"], independent=False)
    assert [e["layer"] for e in result["cascading"]] == ["head", "features.0"]
    with pytest.raises(AuditError, match="not parameterised"):
        check(layers=["features.2"])  # the ReLU


def test_records_of_two_image_sets_merge_into_the_check_of_both():
    """The metric accumulates per-image records: the records of images 0-4 and 5-8 (as two runs
    would give them) merged give the check of all 9 at once, step by step."""
    classifier = from_module(trained_cnn(), SPEC, ["a", "b"])
    x = inputs(9)
    target = classifier.logits(x).argmax(1)
    paths = [f"{i}.png" for i in range(9)]
    gradient = methods.get("gradient")()
    parts = []
    for s in (slice(0, 5), slice(5, 9)):
        part = RandomisationCheck()
        part.update(randomisation_records(classifier, gradient, x[s], target[s], paths=paths[s], name="gradient",
                                          independent=False))
        parts.append(part)
    parts[0].merge(parts[1])
    expected = randomisation_check(classifier, gradient, x, target, name="gradient", independent=False)
    merged = parts[0].compute()
    assert merged["images"] == 9 and merged["layers"] == expected["layers"]
    for mine, theirs in zip(merged["cascading"], expected["cascading"]):
        assert mine["layer"] == theirs["layer"] and mine["n"] == theirs["n"]
        assert mine["spearman"] == pytest.approx(theirs["spearman"], rel=1e-12)
    with pytest.raises(AuditError, match="0.png is in two of the merged states"):
        parts[0].merge(parts[0])


def test_onnx_twin_end_to_end(tmp_path):
    onnx_graph = pytest.importorskip("audit.models.onnx_graph",
                                     reason="audit.models.onnx_graph (the ONNX twin) is not available yet")
    if not hasattr(onnx_graph, "build_torch_twin"):
        pytest.skip("audit.models.onnx_graph.build_torch_twin is not available yet")
    from audit.models.loader import ModelOptions, load_classifier

    path = export_onnx(trained_cnn(), tmp_path / "tiny.onnx", shape=(1, 16, 16))
    classifier = load_classifier(path, ModelOptions())
    twin = classifier.differentiable
    before = state(twin)
    x = inputs()
    target = classifier.logits(x).argmax(1)
    result = randomisation_check(classifier, methods.get("gradient")(), x, target, name="gradient")
    assert result["layers"] == classifier.layer_names()  # execution order = graph order here
    cascading = [e["spearman"] for e in result["cascading"]]
    assert cascading[-1] < cascading[0] - 0.2
    assert classifier.differentiable is twin
    for key, value in state(twin).items():
        assert torch.equal(value, before[key])


class InputMap(SaliencyMethod):
    """|x|: a map that ignores the model (Adebayo et al.'s edge detector), so it must fail."""

    def attribute(self, model, x, target):
        return x.abs().amax(dim=1).numpy()


def step(spearman, ci, **extra):
    return {"cascading": [{"layer": "head", "spearman": 0.0, "ci95": [-0.1, 0.1], "n": 4},
                          {"layer": "features.0", "spearman": spearman, "ci95": ci, "n": 4, **extra}]}


def test_sanity_verdict_is_the_last_steps_upper_bound_against_the_threshold():
    assert SANITY_THRESHOLD == 0.5
    passed = sanity(step(0.3, [0.1, 0.49]))
    assert passed == {"status": "passed", "spearman": 0.3, "ci95": [0.1, 0.49], "n": 4, "threshold": 0.5, "layers": 2}
    assert sanity(step(0.3, [0.1, 0.5]))["status"] == "failed"  # not shown to fall below 0.5
    assert sanity(step(-0.8, [-0.9, -0.7]))["status"] == "passed"  # an inverted ranking is no longer the same map
    lone = sanity(step(0.2, [None, None], reason="one image: no spread, no interval", constant_maps=3))
    assert lone["status"] == "not run" and lone["ci95"] is None
    assert lone["reason"].startswith("the last cascading step gives no interval (one image: no spread, no interval; 3 constant")
    skipped = sanity({"cascading": None, "independent": None, "reason": "skipped (--randomization-images 0)"})
    assert (skipped["status"], skipped["spearman"], skipped["reason"]) == ("not run", None, "skipped (--randomization-images 0)")


def test_a_map_that_ignores_the_model_fails_and_the_gradient_passes():
    _, _, _, result = check(method=InputMap(), n=8, independent=False)
    failed = sanity(result)
    assert failed["status"] == "failed" and failed["spearman"] == pytest.approx(1.0)
    _, _, _, result = check(n=8, independent=False)
    passed = sanity(result)
    assert passed["status"] == "passed" and passed["ci95"][1] < 0.5, passed


def test_parameters_a_layer_reads_without_calling_them_are_randomised_with_it() -> None:
    """An unflattened torch.export program's attention computes with out_proj.weight itself, so
    out_proj is never called; it is re-initialised with the attention that reads it."""
    from audit.stages.randomisation import execution_order, randomised_copy
    from audit.models.native import native_program_module

    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Linear(4, 8)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.head = nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            t = self.embed(x.flatten(2).transpose(1, 2))
            return self.head(self.attn(t, t, t, need_weights=False)[0].mean(1))

    torch.manual_seed(0)
    x = torch.randn(2, 4, 2, 2)
    program = torch.export.export(Tokens().eval(), (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    module = native_program_module(program, "tokens.pt2")
    order, unused = execution_order(module, x)
    assert "attn" in order and "attn.out_proj" in unused
    randomised = randomised_copy(module, order, [order.index("attn")], seed=0, not_executed=unused)
    before, after = dict(module.named_parameters()), dict(randomised.named_parameters())
    assert not torch.equal(before["attn.out_proj.weight"], after["attn.out_proj.weight"])
    assert torch.equal(before["head.weight"], after["head.weight"])
