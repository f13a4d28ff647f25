"""The model-parameter randomisation check's summary and verdict (Adebayo et al. 2018, "Sanity
checks for saliency maps"; Cohen et al. 2021, Sec. 4.5 and Appendix H). The check itself (layers,
re-initialisation, the images chosen, the maps) is a pipeline stage,
``audit.stages.randomisation``; this metric accumulates its per-image, per-step records.

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
the sample models (128 synthetic images, the 32 chosen by sha256(path), ``audit run``
defaults): gradient 0.11 / 0.11, guided backprop 0.20 / 0.21, grad-cam −0.97 / −0.39 (biased /
unbiased model) pass with upper bounds at most 0.23; occlusion 0.984 / 0.989 and integrated
gradients 1.000 / 1.000 fail (on
black backgrounds both are zero wherever the image is, whatever the weights). A method whose
check was skipped, raised, or left fewer than two images with an interval is "not run", with
the reason; so is a method whose original maps are all constant (nothing to rank, whatever the
weights: the check cannot judge it).

``seconds_per_layer_per_image``: the wall time of the randomised steps' map computations over
(steps × images), for the benchmark; deep copies, re-initialisation and correlations excluded.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from audit.metrics.base import Metric
from audit.metrics.intervals import T_INTERVAL, mean_interval

SANITY_THRESHOLD = 0.5
PASSED, FAILED, NOT_RUN = "passed", "failed", "not run"


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


class RandomisationCheck(Metric):
    """Accumulates ``randomisation_records`` (``update(records)``), or why the check did not run
    (``skip(reason)``); ``compute`` gives results.json's ``randomization`` block."""

    name = "randomization"

    def __init__(self) -> None:
        self.add_state("paths", [], "cat", dtype=str)
        self.add_state("constant_original", [], "cat", dtype=bool)
        self.add_state("cascading_rho", [], "cat")  # per image: ρ at each cascading step
        self.add_state("independent_rho", [], "cat")
        for name in ("method", "reason"):
            self.add_state(name, "", "one")
        for name in ("seed", "layers", "not_executed", "cascading_layers", "independent_layers"):
            self.add_state(name, [], "one")
        self.add_state("seconds", 0.0, "sum")
        self.add_state("steps", 0, "sum")

    def update(self, records: dict[str, Any]) -> None:
        self.paths.extend(records["paths"])
        self.constant_original.extend(bool(c) for c in records["constant_original"])
        self.cascading_rho.extend(np.asarray(records["cascading_rho"], dtype=np.float64))
        self.independent_rho.extend(np.asarray(records["independent_rho"], dtype=np.float64))
        self.method = records["method"]
        self.seed = [int(records["seed"])]
        for name in ("layers", "not_executed", "cascading_layers", "independent_layers"):
            setattr(self, name, list(records[name]))
        self.seconds += records["seconds"]
        self.steps += records["steps"]

    def skip(self, reason: str) -> None:
        self.reason = reason

    def compute(self) -> dict[str, Any]:
        if not self.paths:  # the same keys as a check that ran, without values (a gate key stays valid)
            reason = self.reason or "the randomisation check saw no images"
            return {"method": self.method or None, "images": 0, "seed": self.seed[0] if self.seed else None,
                    "layers": list(self.layers), "not_executed": list(self.not_executed), "constant_original": 0,
                    "interval": T_INTERVAL, "cascading": None, "independent": None, "seconds_per_layer_per_image": None,
                    "reason": reason}
        images = len(self.paths)

        def entries(layers: list[str], rows: list[np.ndarray]) -> list[dict[str, Any]]:
            table = np.asarray(rows, dtype=np.float64).reshape(images, len(layers))
            return [_step_entry(layer, table[:, j]) for j, layer in enumerate(layers)]

        return {
            "method": self.method,
            "images": images,
            "seed": self.seed[0],
            "layers": list(self.layers),
            "not_executed": list(self.not_executed),
            "constant_original": int(sum(self.constant_original)),
            "interval": T_INTERVAL,
            "cascading": entries(self.cascading_layers, self.cascading_rho),
            "independent": entries(self.independent_layers, self.independent_rho),
            "seconds_per_layer_per_image": self.seconds / (self.steps * images),
        }


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
