"""All saliency metrics of one method, and their place in results.json.

``MethodMetrics`` feeds each batch of maps to the streaming metrics (global saliency,
enrichment, AURRAC, region localisation, pointwise detection) and lays their results out as the schema in the
README: gate-able numbers at fixed keys (``artefact.enrichment.overall``), 95% intervals
beside them (``ci95``), class names instead of indices, and null with a ``reason`` where a
metric cannot be computed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from audit.metrics.aurrac import Aurrac
from audit.metrics.base import MapBatch, exclusion_reason
from audit.metrics.enrichment import ArtefactEnrichment
from audit.metrics.global_saliency import GlobalSaliency
from audit.metrics.localisation import RegionLocalisation
from audit.metrics.pointwise_detection import PointwiseDetection
from audit.metrics.state import Composite

REGION_KEYS = {
    "iou": "iou",
    "iop": "iop",
    "iot": "iot",
    "auprc": "auprc",
    "pointing_game": "pointing_game",
    "relevance_mass": "relevance_mass",
    "rank_accuracy": "relevance_rank_accuracy",
}

AURRAC_KEYS = ("value", "accuracy", "accuracy_ci95", "interval", "difference", "kendall_tau", "kendall_p_value",
               "kendall_points", "kendall_reason", "curve", "n", "excluded")


def _interval(summary: dict[str, Any]) -> list[float | None] | None:
    if summary.get("ci_low") is None and summary.get("ci_high") is None:
        return None
    return [summary.get("ci_low"), summary.get("ci_high")]


def _entry(summary: dict[str, Any], why: str | None = None) -> dict[str, Any]:
    """{"mean", "ci95", "n"} of an ``intervals`` summary, with "reason" (``why`` first) where
    the mean is null, or "ci95_reason" where only the interval is (one image)."""
    result = {"mean": summary.get("mean"), "ci95": _interval(summary), "n": summary.get("n", 0)}
    if result["mean"] is None:
        result["reason"] = why or summary.get("reason")
    elif result["ci95"] is None:
        result["ci95_reason"] = summary.get("reason")
    return result


def _by_class(groups: dict[str, dict[str, Any]], class_names: list[str]) -> dict[str, Any]:
    def name(key: str) -> str:
        return class_names[int(key)] if key.lstrip("-").isdigit() and 0 <= int(key) < len(class_names) else key

    return {name(k): _entry(v) for k, v in groups.items()}


def _statistic(block: dict[str, Any], class_names: list[str], why: str) -> dict[str, Any]:
    """{overall, ci95, n, interval, by_class, by_prediction, inter_class_variance} from a
    metric's summary block; ``why`` explains a null overall."""
    overall = _entry(block.get("overall") or {}, why)
    result = {
        "overall": overall.pop("mean"),
        **overall,
        "interval": (block.get("overall") or {}).get("interval"),
        "by_class": _by_class(block.get("by_label") or {}, class_names),
        "by_prediction": _by_class(block.get("by_prediction") or {}, class_names),
    }
    for key in ("inter_class_variance", "inter_class_variance_reason"):
        if key in block:
            result[key] = block[key]
    return result


class MethodMetrics(Composite):
    """The streaming metrics of one saliency method (``update`` per batch, ``compute`` once;
    ``merge``, ``state_dict`` and ``load_state_dict`` metric by metric)."""

    def __init__(self, class_names: list[str], *, percentile: float = 98.0, region_blur: float = 0.0) -> None:
        self.class_names = class_names
        self.global_saliency = GlobalSaliency(percentile=percentile)
        self.enrichment = ArtefactEnrichment()
        self.aurrac = Aurrac(percentile=percentile)
        self.localisation = RegionLocalisation(blur_sigma=region_blur)
        self.pointwise = PointwiseDetection()
        self._metrics = (self.global_saliency, self.enrichment, self.aurrac, self.localisation, self.pointwise)

    def parts(self) -> dict[str, Any]:
        return {metric.name: metric for metric in self._metrics}

    def update(self, batch: MapBatch) -> np.ndarray:
        """Update every metric; returns the batch's per-image enrichment E(X) (NaN where
        undefined), the artefact score that examples and the intervention check rank by."""
        for metric in (self.global_saliency, self.aurrac, self.localisation, self.pointwise):
            metric.update(batch)
        return self.enrichment.update(batch)

    def per_image(self) -> dict[str, list[float]]:
        columns: dict[str, list[float]] = {}
        for metric in self._metrics:
            columns.update(metric.per_image())
        return columns

    def compute(self) -> dict[str, Any]:
        glob = self.global_saliency.compute()
        enrichment = self.enrichment.compute()
        aurrac = self.aurrac.compute()
        region = self.localisation.compute()
        no_artefact = exclusion_reason(glob["excluded"])
        return {
            "artefact": {
                "mean_saliency": {
                    **_statistic(glob["mean_saliency_z"], self.class_names,
                                 glob["mean_saliency_z"].get("reason") or no_artefact),
                    "normalisation": "z-score over all pixels of all images (Pfau et al. 2019)",
                    "raw": _statistic(glob["mean_saliency"], self.class_names, no_artefact),
                    "pixel_mean": glob["normalisation"]["pixel_mean"],
                    "pixel_std": glob["normalisation"]["pixel_std"],
                },
                "peak_share": {
                    **_statistic(glob["peak_share"], self.class_names, no_artefact),
                    "percentile": glob["percentile"],
                },
                "enrichment": {
                    **_statistic(enrichment, self.class_names, exclusion_reason(enrichment["excluded"])),
                    "pooled": enrichment["pooled"]["value"],
                    **({"pooled_reason": enrichment["pooled"]["reason"]} if "reason" in enrichment["pooled"] else {}),
                },
                "map": glob["map"],
                "excluded": glob["excluded"],
            },
            "aurrac": {
                **{key: aurrac[key] for key in AURRAC_KEYS if key in aurrac},
                **({"reason": exclusion_reason(aurrac["excluded"])} if aurrac["value"] is None else {}),
            },
            "region": {
                **{
                    key: {**_entry(region[source], exclusion_reason(region["excluded"])),
                          "interval": region[source]["interval"]}
                    for key, source in REGION_KEYS.items()
                },
                "pointwise_detection": self.pointwise.compute(),
                "blur_sigma": region["blur_sigma"],
                "ties": region["ties"],
                "excluded": region["excluded"],
                **({"reason": exclusion_reason(region["excluded"])} if region["iou"].get("mean") is None else {}),
            },
        }
