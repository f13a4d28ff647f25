"""Aggarwal et al. (2020) Table 1 for one model: the base classifier audited with the seven
post-hoc methods of the paper, the WILDCAT model with its class maps, on the same test images.

Both audits are ``audit run`` (``audit.pipeline.run_audit``) with every metric: each writes its
outputs (results.json, per_image.csv, maps/) into its own folder, ``base`` and ``wildcat``;
``audit report`` renders either's PDF (not drawn here: two full reports cost more than the
audits of a small model). A row of the table, per method:

- ``classification_auc``: the audited model's test AUROC (``performance.auc``; the base's on
  the seven post-hoc rows, the WILDCAT model's on its own);
- ``localisation_utility``: Aggarwal Appendix B, the mean over images of the average precision
  of the normalised map's pixels against the region mask (``methods.<m>.region.auprc.mean``);
- ``pointwise_map``: pointwise detection, Durand et al. (2017): the map's maximum as the
  predicted point, the classifier's probability as its score, average precision over the
  dataset (``methods.<m>.region.pointwise_detection.map``);
- ``iou``: IoU of the map's top pixels with the region (``methods.<m>.region.iou.mean``).

A post-hoc method the base model cannot run is left out of its audit before anything trains
(``runnable``): guided backprop and guided Grad-CAM rewrite ``nn.ReLU`` modules, which a
model without any (a torch.export .pt2, whose module tree keeps no module types; a network
written with ``F.relu``) does not have. Its row keeps the table's layout, its numbers null and
a ``reason``.

The summary compares the WILDCAT row with the base model's AUROC and with the best post-hoc
method's localisation utility (the highest; ties go to the first in the paper's column order).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from audit.errors import AuditError
from audit.models.classifier import Classifier
from audit.pipeline import RunConfig, run_audit
from audit.progress import SILENT, Phases
from audit.saliency.layers import require_relu_modules

#: The post-hoc methods of Table 1, in the paper's order: GRAD, SG, IG, SIG, GCAM, GBP, GGCAM.
POST_HOC = ("gradient", "smoothgrad", "integrated-gradients", "smoothgrad-ig", "grad-cam", "guided-backprop", "guided-grad-cam")
#: The paper's abbreviation of each method ("Modified": the WILDCAT class map).
PAPER_NAMES = {"gradient": "GRAD", "smoothgrad": "SG", "integrated-gradients": "IG", "smoothgrad-ig": "SIG",
               "grad-cam": "GCAM", "guided-backprop": "GBP", "guided-grad-cam": "GGCAM", "wildcat": "Modified"}
#: Aggarwal et al. Table 1, ResNet-18 column (pneumonia X-rays, RSNA; percent).
PAPER_RESNET18 = {
    "classification_auc": {"base": 98.39, "wildcat": 98.77},
    "localisation_utility": {"GRAD": 38.26, "SG": 26.05, "IG": 41.19, "SIG": 31.07, "GCAM": 32.83, "GBP": 38.26,
                             "GGCAM": 44.76, "Modified": 48.04},
    "pointwise_map": {"Modified": 38.75},
}
MODELS = {"base": POST_HOC, "wildcat": ("wildcat",)}
#: Post-hoc methods that rewrite the backward pass of ``nn.ReLU`` modules.
NEEDS_RELU = ("guided-backprop", "guided-grad-cam")


@dataclass(frozen=True)
class AuditSettings:
    """What both audits share (``RunConfig``'s fields of the same names)."""

    target: str = "predicted"
    batch_size: int = 32
    seed: int = 0
    randomization_images: int = 32
    device: str = "cpu"
    precision: str = "fp32"
    command: str = ""

    def run_config(self, methods: tuple[str, ...]) -> RunConfig:
        return RunConfig(methods=list(methods), target=self.target, batch_size=self.batch_size, seed=self.seed,
                         randomization_images=self.randomization_images, device=self.device,
                         precision=self.precision, command=self.command)


def runnable(base: Classifier) -> dict[str, str]:
    """The post-hoc methods ``base`` cannot run → why (the method's own one-line error), known
    before anything trains, so the comparison leaves them out instead of failing after training."""
    left_out = {}
    for method in NEEDS_RELU:
        try:
            require_relu_modules(base, method)
        except AuditError as exc:
            left_out[method] = str(exc)
    return left_out


def audit_models(models: dict[str, Classifier], test: Any, settings: AuditSettings, out: Path,
                 phases: Callable[[str], Phases] = lambda model: SILENT,
                 left_out: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """``run_audit`` of ``models["base"]`` with ``POST_HOC`` (less ``left_out``) and of
    ``models["wildcat"]`` with ``wildcat`` on ``test``, each into ``out/<model>`` with progress to
    ``phases(model)``; their results."""
    skip = left_out or {}
    return {name: run_audit(models[name], test, settings.run_config(tuple(m for m in chosen if m not in skip)), out / name,
                            phases(name))
            for name, chosen in MODELS.items()}


def _get(block: Any, *keys: str) -> Any:
    for key in keys:
        block = block.get(key) if isinstance(block, dict) else None
    return block


def table(results: dict[str, dict[str, Any]], left_out: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Table 1's rows: the base model's post-hoc methods, then the WILDCAT model's class map; a
    method in ``left_out`` keeps its row, numbers null, with the ``reason``."""
    rows = []
    for model, chosen in MODELS.items():
        audited = results[model]
        for method in chosen:
            region = _get(audited, "methods", method, "region")
            rows.append({
                "method": method,
                "model": model,
                "classification_auc": _get(audited, "performance", "auc"),
                "localisation_utility": _get(region, "auprc", "mean"),
                "pointwise_map": _get(region, "pointwise_detection", "map"),
                "iou": _get(region, "iou", "mean"),
            })
            if method in (left_out or {}):
                rows[-1]["reason"] = left_out[method]
    return rows


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The WILDCAT row against the base model's AUROC and the best post-hoc utility, with a sentence."""
    ours = next(row for row in rows if row["model"] == "wildcat")
    post_hoc = [row for row in rows if row["model"] == "base"]
    scored = [row for row in post_hoc if row["localisation_utility"] is not None]
    best = max(scored, key=lambda row: row["localisation_utility"], default=None)  # max keeps the first of ties
    base_auc = post_hoc[0]["classification_auc"] if post_hoc else None
    block = {
        "base_auc": base_auc,
        "wildcat_auc": ours["classification_auc"],
        "auc_difference": _difference(ours["classification_auc"], base_auc),
        "best_post_hoc": None if best is None else best["method"],
        "best_post_hoc_utility": None if best is None else best["localisation_utility"],
        "wildcat_utility": ours["localisation_utility"],
        "utility_difference": _difference(ours["localisation_utility"], None if best is None else best["localisation_utility"]),
    }
    block["sentence"] = sentence(block)
    return block


def _number(value: float | None, signed: bool = False) -> str:
    return "n/a" if value is None else f"{value:+.3f}" if signed else f"{value:.3f}"


def sentence(block: dict[str, Any]) -> str:
    """'WILDCAT: test AUROC 0.990 against 0.995 for the base model (-0.005); localisation utility …'."""
    auc = (f"test AUROC {_number(block['wildcat_auc'])} against {_number(block['base_auc'])} for the base model "
           f"({_number(block['auc_difference'], True)})")
    if block["best_post_hoc"] is None:
        utility = f"localisation utility {_number(block['wildcat_utility'])} (no post-hoc method has one: no test region masks)"
    else:
        utility = (f"localisation utility {_number(block['wildcat_utility'])} against {_number(block['best_post_hoc_utility'])} "
                   f"for the best post-hoc method, {block['best_post_hoc']} ({_number(block['utility_difference'], True)})")
    return f"WILDCAT: {auc}; {utility}."
