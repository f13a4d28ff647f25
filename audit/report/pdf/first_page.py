"""The first page: the finding, the gate, what was audited, and the headline numbers per method.

Someone who reads only this page learns whether the model uses the artefact: the finding is
results.json's ``finding`` (``audit.report.finding``), computed here only for results written
before it existed. A method that failed the randomisation sanity check is marked beside its
numbers; the finding leaves it out.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from reportlab.lib import colors
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Paragraph, Spacer, Table, TableStyle

from audit.metrics.randomisation import FAILED, NOT_RUN
from audit.report.finding import finding_of, method_sanity
from audit.report.pdf import style
from audit.report.pdf.style import STYLES
from audit.report.pdf.text import NA, bounded_list, clip, escape, escape_wrapped, get, interval, is_number, number, percent, shorten, timestamp

GUIDE = (
    "Section 1: how much saliency falls on the artefact, per class. Section 2: whether the predictions change "
    "without the artefact, and whether the maps predict the model's failures. Section 3: whether the maps point "
    "at the region that matters. Section 4: whether the maps can be trusted (randomisation check). Section 5: the "
    "average map per class and example images. The appendix defines every number, gives its source, and lists the "
    "thresholds behind the finding above, the command line, the seed and the package versions."
)
FINDING_COLOURS = {"uses": style.FAIL, "uncertain": style.WARN, "salient": style.WARN, "none": style.PASS, "unknown": style.INFO}
WIDTH = 174 * mm

# (column title, width, keys inside methods.M, keys of its CI or None)
HEADLINES: tuple[tuple[str, float, tuple[str | int, ...], tuple[str | int, ...] | None], ...] = (
    ("enrichment (1 = chance)", 21 * mm, ("artefact", "enrichment", "overall"), ("artefact", "enrichment", "ci95")),
    ("peak share", 17 * mm, ("artefact", "peak_share", "overall"), ("artefact", "peak_share", "ci95")),
    ("mean saliency (z)", 21 * mm, ("artefact", "mean_saliency", "overall"), ("artefact", "mean_saliency", "ci95")),
    ("AURRAC", 16 * mm, ("aurrac", "value"), None),
    ("IoU", 20 * mm, ("region", "iou", "mean"), ("region", "iou", "ci95")),
    ("pointing game", 20 * mm, ("region", "pointing_game", "mean"), ("region", "pointing_game", "ci95")),
    ("saliency vs ablation ρ", 19 * mm, ("saliency_vs_ablation", "spearman"), None),
    ("ρ, randomised model", 23 * mm, ("randomization", "cascading", -1, "spearman"), ("randomization", "cascading", -1, "ci95")),
)
METHOD_WIDTH = WIDTH - sum(width for _, width, _, _ in HEADLINES)


def P(text: str, name: str = "body") -> Paragraph:  # noqa: N802 (a flowable constructor)
    """A paragraph of already-escaped markup."""
    return Paragraph(text, STYLES[name])


#: A table cell holds at most this many characters of user text (``T``): a row cannot split across
#: pages, and 500 characters stay within a page even in the narrowest column.
CELL_CHARS = 500
#: Class names listed on the first page; the rest are counted ("… and 990 more").
LISTED_CLASSES = 12


def T(value: Any, name: str = "cell") -> Paragraph:  # noqa: N802
    """A paragraph of literal text (escaped and clipped to ``CELL_CHARS`` here)."""
    return Paragraph(escape(clip(value, CELL_CHARS)), STYLES[name])


def grid(rows: list[list[Any]], widths: list[float], header: bool = True) -> Table:
    """The report's table look: thin rules, a shaded header row, top-aligned cells."""
    table = Table(rows, colWidths=widths, repeatRows=1 if header else 0)
    commands = [
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
        ("TOPPADDING", (0, 0), (-1, -1), 2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.HexColor(style.GRID)),
    ]
    if header:
        commands += [("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#F0F0F0")), ("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.HexColor("#999999"))]
    table.setStyle(TableStyle(commands))
    return table


def finding_box(result: dict[str, Any]) -> Table:
    """The finding's sentence in bold and its detail, on the level's colour."""
    box = Table(
        [[P(f"<b>{escape(clip(result.get('sentence', ''), 4 * CELL_CHARS))}</b>", "finding")],
         [P(escape(clip(result.get("detail", ""), 4 * CELL_CHARS)), "finding")]],
        colWidths=[WIDTH],
    )
    box.setStyle(TableStyle([
        ("BACKGROUND", (0, 0), (-1, -1), colors.HexColor(FINDING_COLOURS.get(result.get("level"), style.INFO))),
        ("LEFTPADDING", (0, 0), (-1, -1), 8),
        ("RIGHTPADDING", (0, 0), (-1, -1), 8),
        ("TOPPADDING", (0, 0), (-1, 0), 7),
        ("BOTTOMPADDING", (0, -1), (-1, -1), 8),
    ]))
    return box


def gate(results: dict[str, Any]) -> list[Flowable]:
    """PASS/FAIL per check, or "no gate"."""
    section = results.get("gate")
    if not isinstance(section, dict):
        return [P("<b>Release gate:</b> no gate (no <font name='DejaVuSansMono'>--fail-on</font> check was given).")]
    checks = section.get("checks") or []
    failed = sum(1 for check in checks if check.get("outcome") != "pass")
    passed = bool(section.get("passed"))
    colour = style.PASS if passed else style.FAIL
    summary = f"all {len(checks)} checks pass" if passed else f"{failed} of {len(checks)} checks fail"
    rows: list[list[Any]] = [[T("check", "cell_head"), T("value", "cell_head_right"), T("outcome", "cell_head"), T("reason", "cell_head")]]
    for check in checks:
        outcome = str(check.get("outcome", "")).upper()
        tint = style.PASS if outcome == "PASS" else style.FAIL
        value = check.get("value")
        rows.append([
            T(check.get("expression", ""), "mono"),
            T(number(value) if is_number(value) else (NA if value is None else value), "cell_right"),
            P(f"<font color='{tint}'><b>{escape(outcome)}</b></font>", "cell"),
            T(check.get("reason") or "", "cell"),
        ])
    return [
        P(f"<b>Release gate:</b> <font color='{colour}'><b>{'PASS' if passed else 'FAIL'}</b></font> ({summary})"),
        grid(rows, [70 * mm, 22 * mm, 16 * mm, 66 * mm]),
    ] if checks else [P(f"<b>Release gate:</b> <font color='{colour}'><b>{'PASS' if passed else 'FAIL'}</b></font> (no checks)")]


def facts(results: dict[str, Any]) -> Table:
    """Model, data and run, as two columns of key–value pairs."""
    model, data, perf = results.get("model", {}), results.get("data", {}), results.get("performance", {})
    skipped = data.get("skipped") or []
    unreadable = data.get("masks_unreadable") or []
    classes = model.get("classes") or []
    spec = model.get("input") or {}
    left = [
        ("Model", PurePath(str(model.get("path", NA))).name),
        ("path", model.get("path", NA)),
        ("format", f"{model.get('format', NA)}" + (f" ({model['provider']})" if model.get("provider") else "")),
        ("sha256", model.get("sha256", NA)),
        ("classes", bounded_list([str(c) for c in classes], LISTED_CLASSES) or NA),
        ("input", f"{spec.get('channels', '?')}×{spec.get('height', '?')}×{spec.get('width', '?')}, mean {spec.get('mean')}, std {spec.get('std')}"),
    ]
    right = [
        ("Data", shorten(data.get("root", NA), 60)),
        ("images", f"{data.get('images', NA)} audited, {len(skipped)} skipped"),
        ("with artefact mask", str(data.get("with_artefact", NA))),
        ("with region mask", str(data.get("with_region", NA))),
        ("masks", f"{data.get('masks_resized', 0)} resized, {len(unreadable)} unreadable"),
        ("accuracy / AUROC", f"{number(perf.get('accuracy'))} / {number(perf.get('auc'))} (n = {perf.get('n', NA)})"),
        ("date", timestamp(results.get("created", NA))),
        ("tool, seed", f"{get(results, 'tool', 'name') or 'audit'} {get(results, 'tool', 'version') or NA}, seed {results.get('seed', NA)}, target {results.get('target', NA)}"),
    ]
    rows = []
    for i in range(max(len(left), len(right))):
        row: list[Any] = []
        for side in (left, right):
            if i < len(side):
                key, value = side[i]
                bold = i == 0
                row += [T(key, "cell_head" if bold else "cell"), T(value, "mono" if key == "sha256" else ("cell_head" if bold else "cell"))]
            else:
                row += ["", ""]
        rows.append(row)
    table = grid(rows, [18 * mm, 68 * mm, 27 * mm, 61 * mm], header=False)
    table.setStyle(TableStyle([("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.HexColor("#999999"))]))
    return table


def headlines(results: dict[str, Any]) -> list[Flowable]:
    """One row per method with its headline numbers (95% CI beneath), and why any is n/a."""
    methods = results.get("methods") or {}
    if not methods:
        return [P("No saliency method was run, so there are no per-method numbers.")]
    head = [T("method", "cell_head")] + [T(title, "cell_head_right") for title, _, _, _ in HEADLINES]
    rows: list[list[Any]] = [head]
    notes: list[str] = []
    for name, entry in methods.items():
        row: list[Any] = [method_cell(name, entry)]
        for title, _, keys, ci_keys in HEADLINES:
            value = get(entry, *keys)
            text = escape(number(value))
            if ci_keys and (bounds := interval(get(entry, *ci_keys))):
                text += f"<br/><font size='6.5' color='{style.NEUTRAL}'>{escape(bounds)}</font>"
            if keys[0] == "aurrac" and is_number(get(entry, "aurrac", "accuracy")):
                text += f"<br/><font size='6.5' color='{style.NEUTRAL}'>acc. {escape(number(get(entry, 'aurrac', 'accuracy')))}</font>"
            if value is None:
                reason = get(entry, keys[0], keys[1], "reason") or get(entry, keys[0], "reason") or "not computed"
                notes.append(f"{name}, {title}: {clip(reason, CELL_CHARS)}")
            row.append(P(text, "cell_right"))
        rows.append(row)
    widths = [METHOD_WIDTH] + [width for _, width, _, _ in HEADLINES]
    flowables: list[Flowable] = [grid(rows, widths)]
    flowables.append(P(
        "Grey: 95% confidence interval; AURRAC with the plain accuracy beneath. Enrichment: share of saliency on the "
        "artefact over its share of the area (1 = chance). Peak share: share of the top 2% salient pixels on the artefact. "
        "IoU and pointing game against the region masks (1 = perfect). Saliency vs ablation: Spearman ρ between saliency "
        "on the artefact and the probability drop when it is removed. Last column: correlation of the maps with those of "
        "the fully randomised model (near 0 is good; high means the method does not reflect what the model learned): a "
        "method whose 95% CI reaches the threshold fails the sanity check and is left out of the finding above.", "note"))
    for note in notes:
        flowables.append(P(f"{NA}: {escape(note)}", "note"))
    return flowables


def method_cell(name: str, entry: dict[str, Any]) -> Paragraph:
    """The method's name, with its sanity check beneath when it failed or did not run."""
    check = method_sanity(entry)
    text = f"<b>{escape_wrapped(clip(name, 80), METHOD_WIDTH - 6, style.BOLD, STYLES['cell'].fontSize)}</b>"
    if check.get("status") == FAILED:
        text += f"<br/><font size='6.5' color='{style.FAIL}'>failed sanity check: not evidence</font>"
    elif check.get("status") == NOT_RUN:
        text += f"<br/><font size='6.5' color='{style.NEUTRAL}'>sanity check not run</font>"
    return P(text, "cell")


def ablation_line(results: dict[str, Any]) -> Paragraph:
    parts = []
    for kind, label in (("artefact", "artefact removed"), ("region", "only the region kept")):
        unchanged = get(results, "ablation", kind, "unchanged") or {}
        if is_number(unchanged.get("mean")):
            parts.append(f"{label}: {percent(unchanged['mean'])} of predictions unchanged (n = {unchanged.get('n')})")
        else:
            parts.append(f"{label}: {NA} ({get(results, 'ablation', kind, 'reason') or 'no masks'})")
    return P("<b>Ablation:</b> " + escape("; ".join(parts)) + ".")


#: results.json warnings shown on page 1 (the rest are counted)
LISTED_WARNINGS = 5


def caveats(results: dict[str, Any]) -> list[Flowable]:
    """results.json's ``warnings`` (a softmax applied twice, predictions at chance, …) under the
    finding, where they qualify it: a report must not hide its caveats."""
    warnings = [str(w) for w in results.get("warnings") or []]
    if not warnings:
        return []
    shown = [P(f"<font color='{style.WARN}'><b>Caveat:</b></font> {escape(clip(w, CELL_CHARS))}", "small") for w in warnings[:LISTED_WARNINGS]]
    if len(warnings) > LISTED_WARNINGS:
        shown.append(P(f"… and {len(warnings) - LISTED_WARNINGS} more caveats in results.json (warnings)", "small"))
    return [*shown, Spacer(0, 4)]


def first_page(results: dict[str, Any]) -> list[Flowable]:
    model_name = PurePath(str(get(results, "model", "path") or NA)).name
    return [
        P("Artefact audit report", "title"),
        P(f"{escape(model_name)} · {escape(timestamp(results.get('created', '')))}", "subtitle"),
        finding_box(finding_of(results)),
        Spacer(0, 6),
        *caveats(results),
        *gate(results),
        Spacer(0, 6),
        facts(results),
        Spacer(0, 4),
        ablation_line(results),
        P("Headline numbers per saliency method", "h2"),
        *headlines(results),
        P("What the following pages show", "h2"),
        P(escape(GUIDE), "small"),
    ]
