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
for ties) between |original map| and |randomised map|, flattened; NaN for a constant map
(either one), which has no ranking. The summary per step (mean over images with a 95%
t-interval, constant maps counted) and the verdict (``sanity``) are the metric's,
``audit.metrics.randomisation``, which states them.

Which images (``choose_images``): the ``randomization_images`` readable images of the whole
dataset listing with the smallest key sha256(path) (the path as written in per_image.csv), ties
by path, read here by the dataset's reader after the run has streamed; their classes follow
``--target`` from a forward pass of them. The choice does not depend on batch sizes, arrival
order or shards, so a sharded run checks the images one run would (only shard 1 runs this
stage). This stage emits per-image, per-step records (``randomisation_records``: ρ per image and
step, constant original maps, timing); the metric ``audit.metrics.randomisation
.RandomisationCheck`` accumulates them and computes the summary below.

``seconds_per_layer_per_image``: the wall time of the randomised steps' map computations over
(steps × images), for the benchmark; deep copies, re-initialisation and correlations excluded.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import time
from typing import Any, Callable

import numpy as np
import torch
from scipy import stats
from torch import nn

from audit.data.batch import Batch
from audit.data.dataset import MaskReport
from audit.data.names import escape_path
from audit.errors import AuditError
from audit.metrics.randomisation import RandomisationCheck
from audit.metrics.tensors import host_maps
from audit.models.classifier import Classifier
from audit.models.layer_names import inner_model, named_layers, run_with_hooks
from audit.models.loader import LogitsOnly
from audit.models.native import script_execution_order
from audit.saliency.base import SaliencyMethod, network

RUNNING_STATISTICS = ("running_mean", "running_var")
FALLBACK_STD = 0.01


def is_parameterised(module: nn.Module) -> bool:
    """True for a module with parameters or BatchNorm running statistics of its own."""
    return any(True for _ in module.parameters(recurse=False)) or any(
        name in RUNNING_STATISTICS for name, _ in module.named_buffers(recurse=False))


def execution_order(module: nn.Module, x: torch.Tensor) -> tuple[list[str], list[str]]:
    """(names in forward execution order, names never called) of the parameterised
    sub-modules, from one forward pass of ``x[:1]`` with forward hooks (from the graph for a
    TorchScript module, which takes no hooks)."""
    candidates = {name: m for name, m in named_layers(module).items() if is_parameterised(m)}
    script = inner_model(module)  # a class-map model's ScriptModule is wrapped (LogitsOnly)
    if isinstance(script, torch.jit.ScriptModule):
        order = [name for name in script_execution_order(script) if name in candidates]
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


def randomise_layer(named: dict[str, nn.Module], layers: list[str], i: int, seed: int, not_executed: list[str] = ()) -> None:
    """Re-initialise ``layers[i]`` of the model whose layers are ``named``, in place, under
    seed + i, together with its sub-modules in ``not_executed``: parameters its own forward
    reads without calling them (an unflattened .pt2's attention reads ``out_proj.weight`` itself)."""
    reinitialise(named[layers[i]], seed + i)
    for name in not_executed:
        if name.startswith(layers[i] + "."):
            reinitialise(named[name], seed + i)


def randomised_copy(module: nn.Module, layers: list[str], indices: list[int], seed: int,
                    not_executed: list[str] = ()) -> nn.Module:
    """A deep copy of ``module`` with ``layers[i]`` re-initialised (``randomise_layer``), i in indices."""
    twin = copy.deepcopy(module)
    named = named_layers(twin)
    for i in indices:
        randomise_layer(named, layers, i, seed, not_executed)
    return twin.eval()


def with_module(classifier: Classifier, module: nn.Module) -> Classifier:
    """A Classifier whose forward and differentiable paths are both ``module`` (and whose class
    maps, for a class-map model, are ``module``'s: ``LogitsOnly.class_maps``)."""
    maps = module.class_maps if isinstance(module, LogitsOnly) else None
    return dataclasses.replace(classifier, forward_fn=module, build_differentiable=lambda: module,
                               _differentiable=module, build_layered=None, _layered=None, class_maps=maps)


def is_constant(saliency: np.ndarray) -> bool:
    """True when |saliency| has one value everywhere: no ranking (an all-zero map, too)."""
    magnitude = np.abs(np.asarray(saliency, dtype=np.float64))
    return bool(magnitude.min() == magnitude.max())


def map_spearman(original: np.ndarray, randomised: np.ndarray) -> float:
    """Spearman ρ of |original| and |randomised| flattened; NaN if either is constant."""
    return ranks_correlation(map_ranks(original), map_ranks(randomised))


def map_ranks(saliency: np.ndarray) -> np.ndarray | None:
    """Average ranks of |saliency| flattened (ties share their mean rank, as Spearman's ρ ranks),
    centred and scaled to unit length; None for a constant map (no ranking). Spearman's ρ of two
    maps is then the dot product of their ranks (``ranks_correlation``): the check ranks each
    original map once, not once per step."""
    if is_constant(saliency):
        return None
    ranks = stats.rankdata(np.abs(np.asarray(saliency, dtype=np.float64)).ravel())
    ranks -= ranks.mean()
    return ranks / math.sqrt(float((ranks * ranks).sum()))  # no BLAS call: its spinning threads slowed torch's next maps


def ranks_correlation(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Pearson's r of two ``map_ranks`` (Spearman's ρ of the maps); NaN when either is constant."""
    return math.nan if a is None or b is None else min(1.0, max(-1.0, float((a * b).sum())))


def randomisation_records(
    classifier: Classifier,
    method: SaliencyMethod,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    paths: list[str],
    name: str,
    seed: int = 0,
    layers: list[str] | None = None,
    independent: bool = True,
    batch_size: int = 32,
    on_step: Callable[[int], None] = lambda steps: None,
) -> dict[str, Any]:
    """Cascading (and independent) randomisation of ``classifier`` for ``method`` on the
    normalised images ``x`` (n, C, H, W) with ids ``paths`` and classes ``target`` (n,); see
    the module docstring. The records: per image its ρ at every cascading and independent step
    (rows of ``cascading_rho`` / ``independent_rho``) and whether its original map is constant,
    with the steps' layers and the timing (``RandomisationCheck.update`` takes them).

    ``layers`` restricts the check to these layer names (still in execution order);
    ``batch_size`` bounds the images per ``method.attribute`` call; ``on_step(1)`` after each
    randomised step (``randomisation_steps`` counts them).
    """
    if len(x) == 0:
        raise AuditError("the randomisation check got no images; give it at least one")
    target = torch.as_tensor(target, dtype=torch.int64, device=x.device)
    batch_size = min(batch_size, classifier.batch_limit or batch_size)  # a graph fixed at a batch of one
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
            return np.concatenate([host_maps(method.attribute(model, x[s:s + batch_size], target[s:s + batch_size]))
                                   for s in range(0, len(x), batch_size)])  # Spearman runs in scipy, on the host

    reference = maps_of(with_module(classifier, original))
    reference_ranks = [map_ranks(m) for m in reference]
    elapsed, steps = 0.0, 0

    def step(module: nn.Module) -> np.ndarray:
        nonlocal elapsed, steps
        start = time.perf_counter()
        maps = maps_of(with_module(classifier, module.eval()))
        elapsed += time.perf_counter() - start
        steps += 1
        on_step(1)
        return np.array([ranks_correlation(a, map_ranks(b)) for a, b in zip(reference_ranks, maps)])

    # One copy for the whole cascade, one more layer re-initialised per step, and one for the
    # independent steps, each layer restored from its saved state after its step: the weights of
    # a fresh copy per step (layer j always under seed + j) without a deep copy per step.
    last = len(order) - 1
    cascade = copy.deepcopy(original)
    named = named_layers(cascade)
    cascading = []
    for j in range(last, -1, -1):
        randomise_layer(named, order, j, seed, unused)
        cascading.append(step(cascade))
    independents = []
    if independent:
        single = copy.deepcopy(original)
        named = named_layers(single)
        for j in range(len(order)):
            saved = {key: value.clone() for key, value in named[order[j]].state_dict().items()}
            randomise_layer(named, order, j, seed, unused)
            independents.append(step(single))
            named[order[j]].load_state_dict(saved)
    return {
        "method": name,
        "seed": seed,
        "layers": order,
        "not_executed": unused,
        "paths": list(paths),
        "constant_original": [is_constant(m) for m in reference],
        "cascading_layers": [order[j] for j in range(last, -1, -1)],
        "cascading_rho": np.stack(cascading, axis=1),
        "independent_layers": list(order) if independent else [],
        "independent_rho": np.stack(independents, axis=1) if independents else np.zeros((len(x), 0)),
        "seconds": elapsed,
        "steps": steps,
    }


def randomisation_steps(classifier: Classifier, method: SaliencyMethod, x: torch.Tensor, independent: bool = True) -> int:
    """How many randomised steps ``randomisation_records`` takes for ``method``: one cascading
    step per layer, and as many independent ones."""
    order, _ = execution_order(network(classifier, method), x)
    return len(order) * (2 if independent else 1)


def randomisation_check(
    classifier: Classifier,
    method: SaliencyMethod,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    name: str,
    paths: list[str] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """The summary (results.json's ``randomization`` block) of ``randomisation_records`` on
    these images (``paths`` default to their indices), as ``RandomisationCheck.compute`` gives it."""
    check = RandomisationCheck()
    paths = [str(i) for i in range(len(x))] if paths is None else paths
    check.update(randomisation_records(classifier, method, x, target, paths=paths, name=name, **options))
    return check.compute()


def selection_key(path: str) -> str:
    """sha256 of the image path as written in per_image.csv (hex): the order images are chosen in."""
    return hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()


def choose_images(dataset: Any, count: int) -> Batch:
    """The ``count`` readable images of the whole listing with the smallest ``selection_key``,
    ties by path, read by the dataset's own reader (a copy of it: the run's skip list and mask
    report are left alone)."""
    ordered = sorted(dataset.entries, key=lambda entry: (selection_key(escape_path(entry[0])), escape_path(entry[0])))
    chosen = dataclasses.replace(dataset, entries=ordered, skipped=[], mask_report=MaskReport())
    return next(iter(chosen.batches(count)))
