"""Model-parameter randomisation sanity check (Adebayo et al. 2018, "Sanity checks for
saliency maps", the cascading and independent randomisation tests; as run by Cohen et al.
2021, "Gifsplanation via Latent Shift", Sec. 4.5 and Appendix H).

Layers: the sub-modules with parameters of their own, or BatchNorm running statistics of their
own, of the model the method differentiates (``audit.saliency.base.network``), in forward execution order. The order is taken from one
forward pass of one image with a forward hook on each such module (the order in which their
outputs are produced; a module called twice counts at its first call), not from the
registration order; modules the forward pass never calls are left out and listed
(``not_executed``), and re-initialised with their nearest called ancestor, whose forward reads
their parameters (an unflattened .pt2's attention reads ``out_proj.weight`` itself). A loaded
TorchScript module refuses hooks: its order is the order in which its TorchScript graph first
reads each layer's own parameters or buffers (``audit.models.native.script_execution_order``).

Steps, for layers L_1 … L_m in execution order:

    cascading step k (k = 1 … m):   L_m, L_{m−1}, …, L_{m−k+1} re-initialised (output → input)
    independent step for L_j:        only L_j re-initialised, all else as trained

Each step re-initialises a fresh deep copy of the twin, so the caller's model is never touched
and nothing is restored by hand. Layer L_j is always re-initialised under
``torch.manual_seed(seed + j)`` (j = execution index from 0), so its random weights are the
same in the cascading and the independent runs: ``module.reset_parameters()`` where the module
has it (PyTorch's default init; for BatchNorm: weight 1, bias 0, running mean 0, running
variance 1, i.e. statistics and affine parameters reset; LayerNorm likewise weight 1, bias 0;
``nn.MultiheadAttention``, which has ``_reset_parameters`` instead: its q/k/v input projections
Xavier-uniform with zero bias and its ``out_proj`` as a new Linear with zero bias, because the
attention applies ``out_proj``'s weights without calling it, so ``out_proj`` on its own is never
executed and is re-initialised with its attention), otherwise (our choice) every own
parameter ~ N(0, 0.01²) and own running statistics reset to mean 0, variance 1. The global RNG
state is restored afterwards. (An *untrained* model gets some layers back unchanged: BatchNorm
at its init, or a layer first built under the same seed. The check is meant for trained models.)

The randomised copy goes through the same method object via a ``Classifier`` whose
``forward_fn``, ``build_differentiable`` and ``_differentiable`` are all the copy, so
forward-only methods (occlusion) see the randomised model too; the original maps are also
taken through the twin (for ONNX models, not onnxruntime), so that only the randomisation
differs between the maps compared. Maps are always taken for the caller's targets (normally
the original model's predictions), and every map computation runs under
``torch.manual_seed(seed)``, so methods with noise (SmoothGrad) draw the same noise for the
original and the randomised models and a drop in correlation is not noise.

Per image and step: ρ = Spearman rank correlation (``scipy.stats.spearmanr``, average ranks
for ties) between |original map| and |randomised map|, flattened. A constant map (either one)
has no ranking, so ρ is undefined: the image is left out of that step's mean and counted as
"constant_maps"; a step without any defined ρ has ``spearman`` and ``ci95`` null with a
"reason" (one image: ``ci95`` null with a "ci95_reason"). ``constant_original`` counts the
checked images whose original map is constant (all-zero Grad-CAM maps behind a dead ReLU).
Per step: the mean over images with a 95% t-interval (``intervals.mean_interval``) and the
standard deviation (Cohen's error bars). The unrandomised correlation (1 by definition) is never part
of a list or an average (a public toolkit's average includes it). A method whose maps keep a
high ρ after the whole network is randomised does not explain the model (guided backprop is
Adebayo's known case).

The verdict (``sanity``): a method *passes* when the upper bound of the 95% interval of the
last cascading step's mean ρ (every layer re-initialised) is below ``SANITY_THRESHOLD`` = 0.5,
and *fails* otherwise: its maps are not shown to lose the ranking they had. This is Adebayo et
al.'s test, reduced to the step where the answer is clearest (Cohen et al., App. H, plot the
whole curve); the threshold and the use of the bound are ours. 0.5 sits in the gap measured on
the sample models (synthetic data, 32 images, ``audit run`` defaults): gradient 0.10 / 0.25,
guided backprop 0.18 / 0.34, grad-cam −0.72 / −0.41 (biased / unbiased model) pass with upper
bounds at most 0.36; occlusion 0.989 / 0.995 and integrated gradients 1.000 / 1.000 fail (on
black backgrounds both are zero wherever the image is, whatever the weights). A method whose
check was skipped, raised, or left fewer than two images with an interval is "not run", with
the reason; so is a method whose original maps are all constant (nothing to rank, whatever the
weights: the check cannot judge it).

``seconds_per_layer_per_image``: the wall time of the randomised steps' map computations over
(steps × images), for the benchmark; deep copies, re-initialisation and correlations excluded.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import nn

from audit.errors import AuditError
from audit.metrics.intervals import T_INTERVAL, mean_interval
from audit.models.classifier import Classifier
from audit.models.layer_names import named_layers, run_with_hooks
from audit.models.native import script_execution_order
from audit.saliency.base import SaliencyMethod, network

RUNNING_STATISTICS = ("running_mean", "running_var")
FALLBACK_STD = 0.01
SANITY_THRESHOLD = 0.5
PASSED, FAILED, NOT_RUN = "passed", "failed", "not run"


def is_parameterised(module: nn.Module) -> bool:
    """True for a module with parameters or BatchNorm running statistics of its own."""
    return any(True for _ in module.parameters(recurse=False)) or any(
        name in RUNNING_STATISTICS for name, _ in module.named_buffers(recurse=False))


def execution_order(module: nn.Module, x: torch.Tensor) -> tuple[list[str], list[str]]:
    """(names in forward execution order, names never called) of the parameterised
    sub-modules, from one forward pass of ``x[:1]`` with forward hooks (from the graph for a
    TorchScript module, which takes no hooks)."""
    candidates = {name: m for name, m in named_layers(module).items() if is_parameterised(m)}
    if isinstance(module, torch.jit.ScriptModule):
        order = [name for name in script_execution_order(module) if name in candidates]
        return order, [name for name in candidates if name not in order]
    called: dict[str, None] = {}  # first calls, in order
    run_with_hooks(module, x[:1], candidates, lambda name, _: called.setdefault(name))
    return list(called), [name for name in candidates if name not in called]


@torch.no_grad()
def reinitialise(module: nn.Module, seed: int) -> None:
    """Re-initialise ``module``'s own parameters and running statistics in place under
    ``torch.manual_seed(seed)`` (see the module docstring), leaving the global RNG as it was."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        if isinstance(module, nn.MultiheadAttention):
            module.out_proj.reset_parameters()  # applied by the attention, never called itself
            module._reset_parameters()
            return
        if callable(getattr(module, "reset_parameters", None)):
            module.reset_parameters()
            return
        for parameter in module.parameters(recurse=False):
            nn.init.normal_(parameter, 0.0, FALLBACK_STD)
        for name, buffer in module.named_buffers(recurse=False):
            if name in RUNNING_STATISTICS:
                buffer.fill_(0.0 if name == "running_mean" else 1.0)


def randomised_copy(module: nn.Module, layers: list[str], indices: list[int], seed: int,
                    not_executed: list[str] = ()) -> nn.Module:
    """A deep copy of ``module`` with ``layers[i]`` re-initialised under seed + i, i in indices,
    together with its sub-modules in ``not_executed``: parameters its own forward reads without
    calling them (an unflattened .pt2's attention reads ``out_proj.weight`` itself)."""
    twin = copy.deepcopy(module)
    named = named_layers(twin)
    for i in indices:
        reinitialise(named[layers[i]], seed + i)
        for name in not_executed:
            if name.startswith(layers[i] + "."):
                reinitialise(named[name], seed + i)
    return twin.eval()


def with_module(classifier: Classifier, module: nn.Module) -> Classifier:
    """A Classifier whose forward and differentiable paths are both ``module``."""
    return dataclasses.replace(classifier, forward_fn=module, build_differentiable=lambda: module,
                               _differentiable=module, build_layered=None, _layered=None)


def is_constant(saliency: np.ndarray) -> bool:
    """True when |saliency| has one value everywhere: no ranking (an all-zero map, too)."""
    magnitude = np.abs(np.asarray(saliency, dtype=np.float64))
    return bool(magnitude.min() == magnitude.max())


def map_spearman(original: np.ndarray, randomised: np.ndarray) -> float:
    """Spearman ρ of |original| and |randomised| flattened; NaN if either is constant."""
    if is_constant(original) or is_constant(randomised):
        return math.nan
    a = np.abs(np.asarray(original, dtype=np.float64)).ravel()
    b = np.abs(np.asarray(randomised, dtype=np.float64)).ravel()
    return float(stats.spearmanr(a, b)[0])


def _step_entry(layer: str, rho: np.ndarray) -> dict[str, Any]:
    """One step's {layer, spearman, ci95, std, n, constant_maps}, with "reason" where the mean
    is null and "ci95_reason" where only the interval is."""
    summary = mean_interval(rho, 0.95)
    constant = int(np.count_nonzero(np.isnan(rho)))
    has_interval = summary["ci_low"] is not None
    entry: dict[str, Any] = {"layer": layer, "spearman": summary["mean"],
                             "ci95": [summary["ci_low"], summary["ci_high"]] if has_interval else None,
                             "std": summary["std"], "n": summary["n"], "constant_maps": constant}
    if summary["mean"] is None:
        entry["reason"] = (f"no image has a defined rho: {constant} of {rho.size} image(s) have a constant map "
                           f"(original or randomised), which has no ranking" if constant else summary["reason"])
    elif not has_interval:
        entry["ci95_reason"] = summary["reason"]
    return entry


def randomisation_check(
    classifier: Classifier,
    method: SaliencyMethod,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    name: str,
    seed: int = 0,
    layers: list[str] | None = None,
    independent: bool = True,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Cascading (and independent) randomisation of ``classifier`` for ``method`` on the
    normalised images ``x`` (n, C, H, W) and classes ``target`` (n,); see the module docstring.

    ``layers`` restricts the check to these layer names (still in execution order);
    ``batch_size`` bounds the images per ``method.attribute`` call.
    """
    if len(x) == 0:
        raise AuditError("the randomisation check got no images; give it at least one")
    target = torch.as_tensor(target, dtype=torch.int64, device=x.device)
    original = network(classifier, method)
    order, unused = execution_order(original, x)
    if layers is not None:
        unknown = sorted(set(layers) - set(order))
        if unknown:
            raise AuditError(f"randomisation layers {unknown} are not parameterised layers called "
                             f"by the model; choose from {order}")
        order = [layer for layer in order if layer in set(layers)]
    if not order:
        raise AuditError(f"{classifier.path}: the model has no layer with parameters to randomise")

    def maps_of(model: Classifier) -> np.ndarray:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return np.concatenate([method.attribute(model, x[s:s + batch_size], target[s:s + batch_size])
                                   for s in range(0, len(x), batch_size)])

    reference = maps_of(with_module(classifier, original))
    elapsed, steps = 0.0, 0

    def step(layer: str, indices: list[int]) -> dict[str, Any]:
        nonlocal elapsed, steps
        model = with_module(classifier, randomised_copy(original, order, indices, seed, unused))
        start = time.perf_counter()
        maps = maps_of(model)
        elapsed += time.perf_counter() - start
        steps += 1
        return _step_entry(layer, np.array([map_spearman(a, b) for a, b in zip(reference, maps)]))

    last = len(order) - 1
    cascading = [step(order[j], list(range(j, last + 1))) for j in range(last, -1, -1)]
    independents = [step(order[j], [j]) for j in range(len(order))] if independent else []
    return {
        "method": name,
        "images": int(len(x)),
        "seed": seed,
        "layers": order,
        "not_executed": unused,
        "constant_original": sum(is_constant(m) for m in reference),
        "interval": T_INTERVAL,
        "cascading": cascading,
        "independent": independents,
        "seconds_per_layer_per_image": elapsed / (steps * len(x)),
    }


class RandomisationCheck:
    """Collects the first ``images`` normalised inputs and targets while batches stream
    (``update``), then runs ``randomisation_check`` on them (``compute``).

    Options: ``images`` (32) bounds the subset; ``seed``, ``layers``, ``independent`` and
    ``batch_size`` are passed on to ``randomisation_check``.
    """

    def __init__(
        self,
        method: SaliencyMethod,
        name: str,
        *,
        images: int = 32,
        seed: int = 0,
        layers: list[str] | None = None,
        independent: bool = True,
        batch_size: int = 32,
    ) -> None:
        if images < 1:
            raise AuditError(f"the randomisation check needs at least one image, got {images}")
        self.method, self.name, self.images = method, name, images
        self.options = {"seed": seed, "layers": layers, "independent": independent,
                        "batch_size": batch_size}
        self._x: list[torch.Tensor] = []
        self._target: list[torch.Tensor] = []
        self._kept = 0

    def update(self, x: torch.Tensor, target: torch.Tensor) -> None:
        take = min(self.images - self._kept, len(x))
        if take > 0:
            self._x.append(x[:take].detach().clone())
            self._target.append(torch.as_tensor(target[:take], dtype=torch.int64).clone())
            self._kept += take

    def compute(self, classifier: Classifier) -> dict[str, Any]:
        if not self._x:
            raise AuditError("the randomisation check saw no images")
        return randomisation_check(classifier, self.method, torch.cat(self._x),
                                   torch.cat(self._target), name=self.name, **self.options)


def sanity(randomization: dict[str, Any]) -> dict[str, Any]:
    """The verdict of a method's randomisation check (module docstring) from its results.json
    entry: {"status": passed / failed / not run, "spearman", "ci95", "n", "threshold",
    "layers"} and a "reason" when not run (then spearman and ci95 are null)."""
    steps = randomization.get("cascading") or []
    result: dict[str, Any] = {"status": NOT_RUN, "spearman": None, "ci95": None, "n": 0,
                              "threshold": SANITY_THRESHOLD, "layers": len(steps)}
    if not steps:
        result["reason"] = randomization.get("reason") or "the randomisation check was not run"
        return result
    last = steps[-1]
    low, high = (last.get("ci95") or [None, None])
    result.update(spearman=last.get("spearman"), n=last.get("n", 0))
    images = randomization.get("images")
    if images and randomization.get("constant_original") == images:
        result["reason"] = (f"the method's maps are constant on all {images} checked image(s) (e.g. a ReLU that is never "
                            f"active before its layer): no ranking to lose, so the check cannot judge the method")
    elif high is None:
        why = last.get("reason") or last.get("ci95_reason") or "fewer than two images"
        result["reason"] = (f"the last cascading step gives no interval ({why}; {last.get('constant_maps', 0)} constant "
                            f"map(s) have no ranking); raise --randomization-images")
    if "reason" in result:
        return result
    result.update(status=PASSED if high < SANITY_THRESHOLD else FAILED, ci95=[low, high])
    return result
