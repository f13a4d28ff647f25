"""All saliency metrics of one method, and their place in results.json.

``MethodMetrics`` feeds each batch of maps to the streaming metrics (global saliency,
enrichment, AURRAC, region localisation) and lays their results out as the schema in the
README: gate-able numbers at fixed keys (``artefact.enrichment.overall``), 95% intervals
beside them (``ci95``), class names instead of indices, and null with a ``reason`` where a
metric cannot be computed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from audit.metrics.aurrac import Aurrac
from audit.metrics.base import MapBatch
from audit.metrics.enrichment import ArtefactEnrichment
from audit.metrics.global_saliency import GlobalSaliency
from audit.metrics.localisation import RegionLocalisation

REGION_KEYS = {
    "iou": "iou",
    "iop": "iop",
    "iot": "iot",
    "auprc": "auprc",
    "pointing_game": "pointing_game",
    "relevance_mass": "relevance_mass",
    "rank_accuracy": "relevance_rank_accuracy",
}


def _interval(summary: dict[str, Any]) -> list[float | None] | None:
    if summary.get("ci_low") is None and summary.get("ci_high") is None:
        return None
    return [summary.get("ci_low"), summary.get("ci_high")]


def _by_class(groups: dict[str, dict[str, Any]], class_names: list[str]) -> dict[str, Any]:
    def name(key: str) -> str:
        return class_names[int(key)] if key.lstrip("-").isdigit() and 0 <= int(key) < len(class_names) else key

    return {name(k): {"mean": v.get("mean"), "ci95": _interval(v), "n": v.get("n")} for k, v in groups.items()}


def _statistic(block: dict[str, Any], class_names: list[str], why: str) -> dict[str, Any]:
    """{overall, ci95, n, by_class, by_prediction, inter_class_variance} from a metric's summary block."""
    overall = block.get("overall", {})
    result = {
        "overall": overall.get("mean"),
        "ci95": _interval(overall),
        "n": overall.get("n", 0),
        "by_class": _by_class(block.get("by_label", {}), class_names),
        "by_prediction": _by_class(block.get("by_prediction", {}), class_names),
    }
    if "inter_class_variance" in block:
        result["inter_class_variance"] = block["inter_class_variance"]
    if result["overall"] is None:
        result["reason"] = overall.get("reason") or why
    return result


def _exclusions(excluded: dict[str, int]) -> str:
    counts = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in excluded.items() if v)
    return f"no image could be scored ({counts or 'no images'})"


class MethodMetrics:
    """The streaming metrics of one saliency method (``update`` per batch, ``compute`` once)."""

    def __init__(self, class_names: list[str], *, percentile: float = 98.0, region_blur: float = 0.0) -> None:
        self.class_names = class_names
        self.global_saliency = GlobalSaliency(percentile=percentile)
        self.enrichment = ArtefactEnrichment()
        self.aurrac = Aurrac(percentile=percentile)
        self.localisation = RegionLocalisation(blur_sigma=region_blur)
        self._metrics = (self.global_saliency, self.enrichment, self.aurrac, self.localisation)

    def update(self, batch: MapBatch) -> np.ndarray:
        """Update every metric; returns the batch's per-image enrichment E(X) (NaN where
        undefined), the artefact score that examples and the intervention check rank by."""
        for metric in (self.global_saliency, self.aurrac, self.localisation):
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
        no_artefact = _exclusions(glob["excluded"])
        return {
            "artefact": {
                "mean_saliency": {
                    **_statistic(glob["mean_saliency_z"], self.class_names, glob.get("reason") or no_artefact),
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
                    **_statistic(enrichment, self.class_names, _exclusions(enrichment["excluded"])),
                    "pooled": enrichment["pooled"].get("value"),
                },
                "map": glob["map"],
                "excluded": glob["excluded"],
            },
            "aurrac": {
                "value": aurrac.get("value"),
                "accuracy": aurrac.get("accuracy"),
                "difference": aurrac.get("difference"),
                "kendall_tau": aurrac.get("kendall_tau"),
                "kendall_p_value": aurrac.get("kendall_p_value"),
                "curve": aurrac.get("curve"),
                "n": aurrac.get("n"),
                "excluded": aurrac.get("excluded"),
                **({"reason": aurrac.get("reason") or _exclusions(aurrac["excluded"])} if aurrac.get("value") is None else {}),
            },
            "region": {
                **{
                    key: {"mean": region[source].get("mean"), "ci95": _interval(region[source]), "n": region[source].get("n")}
                    for key, source in REGION_KEYS.items()
                },
                "blur_sigma": region["blur_sigma"],
                "ties": region["ties"],
                "excluded": region["excluded"],
                **({"reason": _exclusions(region["excluded"])} if region["iou"].get("mean") is None else {}),
            },
        }
