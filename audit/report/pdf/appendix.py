"""The appendix: thresholds of the finding, metric definitions with citations, and what is
needed to reproduce the run (command line, seed, package versions, skipped files)."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from reportlab.lib.units import mm
from reportlab.platypus import Flowable

from audit.report.pdf.definitions import METRICS, REFERENCES
from audit.report.pdf.first_page import P, T, WIDTH, grid
from audit.report.pdf import style
from audit.report.pdf.text import NA, clip, escape, escape_wrapped
from audit.report.finding import THRESHOLDS

PACKAGES = ("audit", "torch", "onnxruntime", "onnxruntime-gpu", "captum", "numpy", "scikit-learn", "scipy", "reportlab", "matplotlib")
LISTED_FILES = 40
KEY_COLUMN = 38 * mm  # the metric column of the definitions table: name, and its results.json key beneath
KEY_SIZE = 6


def versions() -> list[tuple[str, str]]:
    """(package, version) for the packages behind the numbers; onnxruntime-gpu only when installed."""
    found = []
    for name in PACKAGES:
        try:
            found.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            if name != "onnxruntime-gpu":
                found.append((name, "not installed"))
    return found


def _files(title: str, entries: list[dict[str, Any]]) -> list[Flowable]:
    if not entries:
        return []
    rows = [[T("file", "cell_head"), T("reason", "cell_head")]]
    rows += [[T(entry.get("path", NA), "mono"), T(entry.get("reason", ""))] for entry in entries[:LISTED_FILES]]
    flowables: list[Flowable] = [P(escape(title), "h2"), grid(rows, [80 * mm, WIDTH - 80 * mm])]
    if len(entries) > LISTED_FILES:
        flowables.append(P(f"… and {len(entries) - LISTED_FILES} more (see results.json).", "note"))
    return flowables


def _layers(results: dict[str, Any]) -> list[Flowable]:
    """One line per layer-based method (Grad-CAM): the layer its maps were taken at."""
    flowables = []
    for name, entry in (results.get("methods") or {}).items():
        layer = (entry or {}).get("layer")
        if not layer:
            continue
        shape = " × ".join(str(size) for size in layer.get("shape") or []) or NA
        tokens = layer.get("layout") is not None
        default = ("the default: the last block's normalised tokens before its attention" if tokens
                   else "the default: the input of the global pooling that feeds the classifier head")
        how = default if layer.get("default") else f"chosen with -o {name}.layer"
        what = (f"its tokens on the patch grid ({layer.get('extra_tokens', 0)} class/distillation token(s) dropped), "
                f"{escape(shape)} (channels × height × width)" if tokens
                else f"a {escape(shape)} (channels × height × width) feature map")
        eager = layer.get("eager_output")
        folded = (f" An exporter folded a BatchNorm into this layer: its output is that of {escape(eager)}."
                  if layer.get("absorbed_batchnorm") and eager else "")
        flowables.append(P(
            f"{escape(name)} maps are taken at layer <font name='DejaVuSansMono'>{escape(layer.get('name', NA))}</font>, "
            f"{what}, {escape(how)}.{folded}", "small"))
    return flowables


def appendix(results: dict[str, Any]) -> list[Flowable]:
    flowables: list[Flowable] = [P("Appendix", "h1"), P("A. How the finding on the first page is decided", "h2")]
    flowables += [P(f"• {escape(rule)}") for rule in THRESHOLDS]
    flowables.append(P("B. Metric definitions (results.json keys; M is the method's name)", "h2"))
    rows = [[T("metric", "cell_head"), T("definition", "cell_head"), T("source", "cell_head")]]
    for name, key, definition, source in METRICS:
        rows.append([
            P(f"<b>{escape(name)}</b><br/><font name='{style.MONO}' size='{KEY_SIZE}'>"
              f"{escape_wrapped(key, KEY_COLUMN - 6, style.MONO, KEY_SIZE)}</font>", "cell"),
            T(definition),
            T(source),
        ])
    flowables.append(grid(rows, [KEY_COLUMN, 94 * mm, WIDTH - KEY_COLUMN - 94 * mm]))
    flowables.append(P("References", "h2"))
    flowables += [P(f"<b>{escape(short)}</b>: {escape(full)}", "small") for short, full in REFERENCES]
    flowables.append(P("C. Reproducing this run", "h2"))
    command = clip(results.get("command") or "(not recorded)", 4000)
    flowables.append(P("Command line:", "small"))
    flowables.append(P(escape(command), "mono"))
    flowables += _layers(results)
    rows = [[T("package", "cell_head"), T("version", "cell_head")]]
    rows += [[T(name, "mono"), T(version, "mono")] for name, version in versions()]
    flowables.append(P(
        f"Seed {escape(results.get('seed', NA))}; target {escape(results.get('target', NA))}; results schema "
        f"{escape(results.get('schema', NA))}; created {escape(results.get('created', NA))}. Package versions "
        "when this report was written:", "small"))
    versions_table = grid(rows, [40 * mm, 40 * mm])
    versions_table.hAlign = "LEFT"
    flowables.append(versions_table)
    data = results.get("data") or {}
    flowables += _files("D. Skipped images", data.get("skipped") or [])
    flowables += _files("E. Unreadable masks", data.get("masks_unreadable") or [])
    return flowables
