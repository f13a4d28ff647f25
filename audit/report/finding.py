"""The run's finding, as data: does the model use the artefact? (``results.json`` → ``finding``)

Computed from the assembled results with fixed thresholds (``THRESHOLDS``, shown in the PDF's
appendix), written to results.json so that ``--fail-on`` and ``audit compare`` can use it, and
shown on the report's first page. ``audit report`` on a results.json written before the finding
existed computes it here from the numbers (``finding_of``).

* reliance: the artefact ablation (Pfau et al. 2019, App. A.1) changes a share f of the
  predictions, f = 1 − ``ablation.artefact.unchanged``, with the interval [1 − high, 1 − low]
  of the unchanged share (a binomial interval). Against ``FLIP_RATE`` = 10%: the model *uses*
  the artefact when the whole interval is at or above 10%, does *not rely* on it when the whole
  interval is below, and the finding says it *cannot tell* when the interval crosses 10%
  (0 changes out of 30 images: 0–11.6%, Clopper–Pearson);
* saliency: a method's artefact enrichment has its 95% CI lower bound above ``ENRICHMENT`` = 2.
  Only methods that did not fail the randomisation sanity check count (``methods.M.sanity``,
  ``audit.metrics.randomisation``; "not run" counts, and the finding says the maps were not
  checked); a failed method's numbers stay in results.json and on page 1, marked there;
* performance gap: accuracy with and without the artefact differs by at least ``GAP``.

Ablation is the direct test and decides; saliency alone can point at an artefact that the model
does not use (Pfau et al. 2019, App. A.1; Cohen et al. 2021, Sec. 1).

``finding``: {"level", "code", "sentence", "detail", "evidence"}. level → code → sentence:

    uses        uses_artefact          The model uses the artefact
    uncertain   reliance_uncertain     The model may use the artefact / Use of the artefact is not ruled out
    salient     salient_not_relied_on  Saliency points at the artefact, but the model barely relies on it
    none        no_evidence            No evidence that the model uses the artefact
    salient     salient_not_tested     Saliency points at the artefact (not confirmed by ablation)
    unknown     not_tested             No sign of artefact use in the saliency maps (no ablation)
    unknown     not_measurable         Cannot tell whether the model uses the artefact (no artefact masks)
"""

from __future__ import annotations

from typing import Any

from audit.metrics.randomisation import FAILED, NOT_RUN, sanity
from audit.report.pdf.text import get, is_number, number, percent, with_interval

FLIP_RATE = 0.10
ENRICHMENT = 2.0
GAP = 0.10
LISTED_METHODS = 4

THRESHOLDS = (
    f"“Uses the artefact”: replacing the artefact with the image's mean colour changes at least "
    f"{FLIP_RATE:.0%} of the predictions, and so does the lower bound of the 95% binomial interval of that share "
    f"(over the images with an artefact).",
    f"“May use the artefact” / “not ruled out”: that interval contains {FLIP_RATE:.0%}, so the images audited "
    f"cannot settle it (0 changes out of 30 images gives 0–11.6%).",
    f"“Barely relies on it” / “no evidence”: the whole interval lies below {FLIP_RATE:.0%}.",
    f"“Saliency concentrates on the artefact”: the method's artefact enrichment has a 95% CI lower "
    f"bound above {ENRICHMENT:g} (at least {ENRICHMENT:g}× the saliency that the artefact's area predicts). "
    f"A method that fails the randomisation sanity check is left out (its maps do not depend on the model).",
    f"“Performance gap”: accuracy on the images with and without the artefact differs by at least "
    f"{GAP:.2f}.",
    "The ablation decides (it tests the model directly); saliency alone can point at an artefact the "
    "model does not rely on. Without an ablation the finding rests on saliency and says so.",
)
SENTENCES = {
    "uses_artefact": "The model uses the artefact",
    "salient_not_relied_on": "Saliency points at the artefact, but the model barely relies on it",
    "no_evidence": "No evidence that the model uses the artefact",
    "salient_not_tested": "Saliency points at the artefact (not confirmed by ablation)",
    "not_tested": "No sign of artefact use in the saliency maps (no ablation)",
    "not_measurable": "Cannot tell whether the model uses the artefact",
}
LEVELS = {
    "uses_artefact": "uses", "reliance_uncertain": "uncertain", "salient_not_relied_on": "salient",
    "no_evidence": "none", "salient_not_tested": "salient", "not_tested": "unknown", "not_measurable": "unknown",
}


def flip_rate(results: dict[str, Any]) -> dict[str, Any]:
    """{"value", "ci95", "n", "threshold"} of the share of predictions the artefact ablation
    changes (1 − the unchanged share, interval flipped); value null with a "reason" when no
    image could be ablated."""
    unchanged = get(results, "ablation", "artefact", "unchanged") or {}
    mean, low, high = unchanged.get("mean"), unchanged.get("ci_low"), unchanged.get("ci_high")
    entry: dict[str, Any] = {"value": None, "ci95": None, "n": int(unchanged.get("n") or 0), "threshold": FLIP_RATE}
    if not is_number(mean):
        excluded = get(results, "ablation", "artefact", "excluded") or {}
        counts = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in excluded.items() if v)
        entry["reason"] = f"no image could be ablated ({counts})" if counts else unchanged.get("reason") or "no image could be ablated"
        return entry
    entry["value"] = round(1 - mean, 12)  # 1 − 0.9 is 0.0999…: keep the threshold exact
    if is_number(low) and is_number(high):
        entry["ci95"] = [round(max(0.0, 1 - high), 12), round(min(1.0, 1 - low), 12)]
    else:
        entry["ci95_reason"] = unchanged.get("reason") or "no interval"
    return entry


def method_sanity(entry: dict[str, Any]) -> dict[str, Any]:
    """``methods.M.sanity``, or the verdict from ``methods.M.randomization`` for a results.json
    written before the verdict existed."""
    return entry.get("sanity") or sanity(entry.get("randomization") or {})


def method_evidence(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per method: enrichment and its CI, the sanity status, whether it counts and is salient."""
    evidence = {}
    for name, entry in (results.get("methods") or {}).items():
        enrichment = get(entry, "artefact", "enrichment") or {}
        check = method_sanity(entry)
        item: dict[str, Any] = {
            "enrichment": enrichment.get("overall"),
            "ci95": enrichment.get("ci95"),
            "sanity": check.get("status"),
            "counted": check.get("status") != FAILED and is_number(enrichment.get("overall")),
        }
        low = get(item, "ci95", 0)
        item["salient"] = item["counted"] and is_number(low) and low > ENRICHMENT
        if check.get("status") == FAILED:
            item["reason"] = (f"failed the randomisation sanity check (ρ = {number(check.get('spearman'))} with the fully "
                              f"randomised model, 95% CI upper bound {number(get(check, 'ci95', 1))} ≥ {check.get('threshold')})")
        elif not is_number(enrichment.get("overall")):
            item["reason"] = enrichment.get("reason") or "no enrichment"
        if item["ci95"] is None:
            item["ci95_reason"] = (enrichment.get("ci95_reason") or enrichment.get("reason")
                                   or "no interval (fewer than two images with an artefact)")
        evidence[name] = item
    return evidence


def performance_gap(results: dict[str, Any]) -> dict[str, Any]:
    """{"present", "absent", "gap", "threshold"}; gap null with a "reason" when a side has no accuracy."""
    sides = {side: get(results, "performance", "by_artefact", side) or {} for side in ("present", "absent")}
    present, absent = sides["present"].get("accuracy"), sides["absent"].get("accuracy")
    entry: dict[str, Any] = {"present": present, "absent": absent, "gap": None, "threshold": GAP}
    if is_number(present) and is_number(absent):
        entry["gap"] = round(abs(present - absent), 12)
        return entry
    side = "present" if not is_number(present) else "absent"
    why = sides[side].get("reason") or "no labelled image"
    entry["reason"] = f"no accuracy on the images {'with' if side == 'present' else 'without'} the artefact ({why})"
    return entry


def _gap_text(gap: dict[str, Any]) -> str:
    if gap["gap"] is None:
        return ""
    if gap["gap"] >= GAP:
        return f" Accuracy is {number(gap['present'])} on images with the artefact and {number(gap['absent'])} without: a gap of {gap['gap']:.3f}."
    return f" Accuracy is similar with the artefact ({number(gap['present'])}) and without ({number(gap['absent'])})."


def _saliency_text(methods: dict[str, dict[str, Any]]) -> str:
    counted = [(name, m) for name, m in methods.items() if m["counted"]]
    salient = [name for name, m in counted if m["salient"]]
    shown = sorted(counted, key=lambda item: -item[1]["enrichment"])[:LISTED_METHODS] if len(counted) > LISTED_METHODS else counted
    listed = "; ".join(f"{name} {with_interval(m['enrichment'], m['ci95'])}" for name, m in shown)
    if salient:
        text = (f"Saliency concentrates on the artefact for {len(salient)} of {len(counted)} methods "
                f"(enrichment, 1 = chance: {listed}).")
    elif counted:
        text = f"No saliency method concentrates on the artefact (enrichment, 1 = chance: {listed})."
    else:
        text = "No saliency method gives usable evidence."
    failed = [(name, m) for name, m in methods.items() if m["sanity"] == FAILED]
    if failed:
        text += " Left out: " + "; ".join(
            f"{name} (enrichment {number(m['enrichment'])}), which {m['reason']}" for name, m in failed) + "."
    unchecked = [name for name, m in counted if m["sanity"] == NOT_RUN]
    if unchecked:
        text += f" The randomisation sanity check did not run for {', '.join(unchecked)}, so those maps are not checked."
    return text


def _reliance_text(flips: dict[str, Any], results: dict[str, Any]) -> str:
    ci = flips["ci95"]
    bounds = f"95% CI {percent(ci[0])}–{percent(ci[1])}, " if ci else ""
    text = (f"Replacing the artefact with the image's mean colour changes {percent(flips['value'])} of the predictions "
            f"({bounds}n = {flips['n']}; threshold for reliance {FLIP_RATE:.0%})")
    delta = get(results, "ablation", "artefact", "delta_probability", "mean")
    if is_number(delta):
        whose = {"predicted": "the predicted class's", "label": "the labelled class's"}.get(str(results.get("target", "predicted")), f"class {results.get('target')}'s")
        text += f" and {'lowers' if delta < 0 else 'raises'} {whose} probability by {number(abs(delta))} on average"
    return text + "."


def _code(flips: dict[str, Any], methods: dict[str, dict[str, Any]]) -> str:
    salient = any(m["salient"] for m in methods.values())
    if flips["value"] is None:
        if not any(m["counted"] for m in methods.values()):
            return "not_measurable"
        return "salient_not_tested" if salient else "not_tested"
    ci = flips["ci95"]
    if ci is not None and ci[0] >= FLIP_RATE:
        return "uses_artefact"
    if ci is not None and ci[1] < FLIP_RATE:
        return "salient_not_relied_on" if salient else "no_evidence"
    return "reliance_uncertain"


def _uncertain_sentence(flips: dict[str, Any]) -> str:
    if flips["value"] >= FLIP_RATE:
        return "The model may use the artefact (not confirmed at 95%)"
    return f"Use of the artefact is not ruled out (the interval reaches {FLIP_RATE:.0%})"


def finding(results: dict[str, Any]) -> dict[str, Any]:
    """The finding from the assembled results (module docstring); plain text (escape before markup)."""
    flips = flip_rate(results)
    methods = method_evidence(results)
    gap = performance_gap(results)
    code = _code(flips, methods)
    sentence = _uncertain_sentence(flips) if code == "reliance_uncertain" else SENTENCES[code]
    saliency = _saliency_text(methods)
    if code == "not_measurable":
        detail = "No image has an artefact mask, so neither the ablation nor the saliency on the artefact could be measured."
    elif flips["value"] is None:
        detail = saliency + " No artefact ablation could be run to test the model directly."
    else:
        detail = f"{_reliance_text(flips, results)} {saliency}"
        if code == "reliance_uncertain":
            detail += f" The interval of the changed share crosses the {FLIP_RATE:.0%} threshold: more images with the artefact would settle it."
    return {
        "level": LEVELS[code],
        "code": code,
        "sentence": sentence,
        "detail": detail + _gap_text(gap),
        "evidence": {"flip_rate": flips, "methods": methods, "performance_gap": gap, "enrichment_threshold": ENRICHMENT},
    }


def finding_of(results: dict[str, Any]) -> dict[str, Any]:
    """results.json's ``finding``, or the finding computed now for results written without one."""
    stored = results.get("finding")
    return stored if isinstance(stored, dict) and "code" in stored else finding(results)
