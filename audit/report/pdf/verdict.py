"""The plain-language finding on the first page: does the model use the artefact?

Derived from the numbers only, with fixed thresholds (stated in the appendix):

* reliance: replacing the artefact with the image's mean colour (Pfau et al. 2019, App. A.1)
  changes at least ``FLIP_RATE`` of the predictions (point estimate);
* saliency: a method's artefact enrichment has its 95% CI lower bound above ``ENRICHMENT``
  (at least twice the saliency the artefact's area predicts, with confidence);
* performance gap: accuracy with and without the artefact differs by at least ``GAP``.

Ablation is the direct test and decides; saliency alone can point at an artefact that the
model does not use (Pfau et al. 2019, App. A.1; Cohen et al. 2021, Sec. 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from audit.report.pdf.text import get, is_number, number, percent, with_interval

FLIP_RATE = 0.10
ENRICHMENT = 2.0
GAP = 0.10
LISTED_METHODS = 4

THRESHOLDS = (
    f"“Uses the artefact”: replacing the artefact with the image's mean colour changes at least "
    f"{FLIP_RATE:.0%} of the predictions (point estimate over the images with an artefact).",
    f"“Saliency concentrates on the artefact”: the method's artefact enrichment has a 95% CI lower "
    f"bound above {ENRICHMENT:g} (at least {ENRICHMENT:g}× the saliency that the artefact's area predicts).",
    f"“Performance gap”: accuracy on the images with and without the artefact differs by at least "
    f"{GAP:.2f}.",
    "The ablation decides (it tests the model directly); saliency alone can point at an artefact the "
    "model does not rely on. Without an ablation the finding rests on saliency and says so.",
)


@dataclass(frozen=True)
class Finding:
    """level: "uses", "salient", "none" or "unknown"; plain text (escape before markup)."""

    level: str
    headline: str
    detail: str


def flip_rate(results: dict[str, Any]) -> tuple[float | None, list[float] | None, int]:
    """Share of predictions changed by the artefact ablation, its 95% CI and n."""
    unchanged = get(results, "ablation", "artefact", "unchanged") or {}
    mean, low, high = unchanged.get("mean"), unchanged.get("ci_low"), unchanged.get("ci_high")
    if not is_number(mean):
        return None, None, 0
    ci = [max(0.0, 1 - high), min(1.0, 1 - low)] if is_number(low) and is_number(high) else None
    return round(1 - mean, 12), ci, int(unchanged.get("n") or 0)  # 1 − 0.9 is 0.0999…: keep the threshold exact


def salient_methods(results: dict[str, Any]) -> list[str]:
    """Methods whose enrichment CI lower bound exceeds ``ENRICHMENT``."""
    return [
        name
        for name, entry in results.get("methods", {}).items()
        if is_number(low := get(entry, "artefact", "enrichment", "ci95", 0)) and low > ENRICHMENT
    ]


def _enrichments(results: dict[str, Any]) -> str:
    methods = results.get("methods", {})
    shown = [
        (name, get(entry, "artefact", "enrichment", "overall"), get(entry, "artefact", "enrichment", "ci95"))
        for name, entry in methods.items()
    ]
    shown = [item for item in shown if is_number(item[1])]
    if len(shown) > LISTED_METHODS:
        shown = sorted(shown, key=lambda item: -item[1])[:LISTED_METHODS]
    return "; ".join(f"{name} {with_interval(value, ci)}" for name, value, ci in shown)


def _gap(results: dict[str, Any]) -> str:
    present = get(results, "performance", "by_artefact", "present", "accuracy")
    absent = get(results, "performance", "by_artefact", "absent", "accuracy")
    if not (is_number(present) and is_number(absent)):
        return ""
    if abs(present - absent) >= GAP:
        return f" Accuracy is {number(present)} on images with the artefact and {number(absent)} without: a gap of {abs(present - absent):.3f}."
    return f" Accuracy is similar with the artefact ({number(present)}) and without ({number(absent)})."


def finding(results: dict[str, Any]) -> Finding:
    """The first page's verdict on artefact use, from the ablation, enrichment and subsets."""
    flips, ci, n = flip_rate(results)
    salient = salient_methods(results)
    enrichment = _enrichments(results)
    saliency = (
        f"Saliency concentrates on the artefact for {len(salient)} of {len(results.get('methods', {}))} methods "
        f"(enrichment, 1 = chance: {enrichment})."
        if salient
        else f"No saliency method concentrates on the artefact (enrichment, 1 = chance: {enrichment or 'n/a'})."
    )
    gap = _gap(results)
    if flips is None:
        if not enrichment:
            return Finding("unknown", "Cannot tell whether the model uses the artefact", "No image has an artefact mask, so neither the ablation nor the saliency on the artefact could be measured." + gap)
        headline = "Saliency points at the artefact (not confirmed by ablation)" if salient else "No sign of artefact use in the saliency maps (no ablation)"
        return Finding("salient" if salient else "unknown", headline, saliency + " No artefact ablation could be run to test the model directly." + gap)
    flipped = f"Replacing the artefact with the image's mean colour changes {percent(flips)} of the predictions" + (
        f" (95% CI {percent(ci[0])}–{percent(ci[1])}, n = {n}; threshold for reliance {FLIP_RATE:.0%})" if ci else f" (n = {n}; threshold for reliance {FLIP_RATE:.0%})"
    )
    delta = get(results, "ablation", "artefact", "delta_probability", "mean")
    drop = ""
    if is_number(delta):
        drop = f" and {'lowers' if delta < 0 else 'raises'} the predicted class's probability by {number(abs(delta))} on average"
    if flips >= FLIP_RATE:
        return Finding("uses", "The model uses the artefact", f"{flipped}{drop}. {saliency}{gap}")
    if salient:
        return Finding("salient", "Saliency points at the artefact, but the model barely relies on it", f"{flipped}{drop}. {saliency}{gap}")
    return Finding("none", "No evidence that the model uses the artefact", f"{flipped}{drop}. {saliency}{gap}")
