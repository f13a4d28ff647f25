"""Latent Shift counterfactual strips (Cohen et al. 2021, §3 and Fig. 1), read from
``counterfactuals/strips.npz`` (``audit.counterfactual.strips``), so the report needs no model:
per example image the input, the frames from λ = 0 down to λ_low with the classifier's
prediction on each, and the method's map. The section appears only when a Latent Shift method
was run."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from audit.counterfactual.strips import STRIPS, latentshift_method
from audit.report.pdf import plot, style
from audit.report.pdf.fig_examples import compose
from audit.report.pdf.inputs import RunFiles, class_names
from audit.report.pdf.plot import Figure
from audit.report.pdf.text import get, plain, shorten

HEADING = "6. What would change the prediction?"
INTRODUCTION = ("Counterfactual images made by shifting the autoencoder's code of an image until the model's prediction falls "
                "(Latent Shift, Cohen et al. 2021).")
FIELDS = ("images", "frames", "lambdas", "predictions", "p_original", "maps", "artefact", "region", "paths", "labels",
          "target_names", "status", "method", "map", "model_sha256")
SPACER = 0.22  # width of the gaps after the input and before the map, in cells


def load_strips(path: Path) -> tuple[dict[str, np.ndarray] | None, str]:
    """The strips' arrays, or None and why not."""
    try:
        with np.load(path, allow_pickle=False) as data:
            strips = {name: data[name] for name in FIELDS}
    except FileNotFoundError:
        return None, f"{path} not found (written after `audit run` with a Latent Shift method, for images with an artefact mask)"
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        return None, f"{path} unreadable ({type(exc).__name__}); rerun `audit run`"
    frames = strips["frames"]
    if frames.ndim != 5 or len(frames) == 0 or strips["predictions"].shape != frames.shape[:2]:
        return None, f"{path} holds no strips of the expected shape; rerun `audit run`"
    return strips, ""


def _grey(picture: np.ndarray, low: float, high: float) -> np.ndarray:
    """(H, W, C) on [low, high] → (H, W, 3) in [0, 1]."""
    scaled = np.clip((picture.astype(float) - low) / max(high - low, 1e-6), 0, 1)
    return np.repeat(scaled, 3, axis=-1) if scaled.shape[-1] == 1 else scaled[..., :3]


def _lambda(value: float) -> str:
    """λ for a frame's title: 3 significant digits, whole numbers from 100 on (−1000, not −1e+03)."""
    text = "0" if abs(value) < 5e-4 else f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return text.replace("-", "−")


def _bare(ax: Any) -> None:
    ax.grid(False)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _strip_figure(strips: dict[str, np.ndarray], results: dict[str, Any]) -> Figure:
    method, map_name = str(strips["method"]), str(strips["map"])
    n, count = strips["frames"].shape[:2]
    figure = Figure(
        f"Counterfactuals: {method}",
        f"Latent Shift counterfactuals (Cohen et al. 2021) for the {n} image{'s' if n != 1 else ''} whose {method} map is most "
        "concentrated on the artefact, one per row. Left: the file name, its true class and the class explained (\"predicted\": the "
        "model's own prediction, under --target predicted), then the original image x "
        "with p, the model's probability for that class. Then the frames x_λ, decoded by the autoencoder after moving the "
        "image's code by λ along the gradient of p: from λ = 0 (the autoencoder's reconstruction of x) to λ_low, where the search "
        "stopped as p had fallen; above each, p on that frame (in red once it is below 0.5) and λ. Read each row left to right: "
        "what fades or appears as p falls is what the model relies on for that class; if the artefact changes while the region "
        f"stays, the prediction rests on the artefact. Right: the {method} map (yellow = where the frames changed most, "
        f"{_map_words(map_name)}) with the artefact outlined in vermilion and the region in sky blue. A difference between p on x "
        "and at λ = 0 comes from the reconstruction, not from the shift (Cohen et al. 2021, App. K).",
    )
    classes = class_names(results)
    predicted = str(results.get("target", "predicted")) == "predicted"
    ratios = [1.6, 1, SPACER] + [1] * count + [SPACER, 1]
    wspace, hspace, header = 0.06, 0.8, 0.5  # header: inches above the first row for its titles and the arrow
    cell = plot.PAGE_WIDTH_IN / (sum(ratios) + wspace * (len(ratios) - 1) * sum(ratios) / len(ratios))
    height = cell * (n + hspace * (n - 1)) + header
    fig, axes = plot.new(n, len(ratios), height=height, width=plot.PAGE_WIDTH_IN, squeeze=False,
                         gridspec_kw={"width_ratios": ratios, "hspace": hspace, "wspace": wspace})
    fig.subplots_adjust(left=0.0, right=1.0, bottom=0.0, top=1 - header / height)
    first_frame, map_col = 3, 3 + count + 1
    for row in range(n):
        x, frames = strips["images"][row], strips["frames"][row]
        low, high = min(float(x.min()), float(frames.min())), max(float(x.max()), float(frames.max()))
        for ax in axes[row]:
            _bare(ax)
        for col in (2, map_col - 1):
            axes[row, col].set_axis_off()
        label = int(strips["labels"][row])
        true = shorten(classes[label], 14) if 0 <= label < len(classes) else ("?" if label < 0 else str(label))
        explained = shorten(str(strips["target_names"][row]), 12) + (" (predicted)" if predicted else "")
        lines = [shorten(str(strips["paths"][row]).replace("\\", "/").rsplit("/", 1)[-1], 18), f"true {true}",
                 f"explains {explained}"]
        if str(strips["status"][row]) != "reached":
            lines.append(f"({strips['status'][row]})")
        axes[row, 0].set_axis_off()
        axes[row, 0].text(1.0, 0.5, "\n".join(plain(line) for line in lines), ha="right", va="center", fontsize=5.8,
                          linespacing=1.3, transform=axes[row, 0].transAxes)
        _cell(axes[row, 1], _grey(x, low, high), f"original x\np {strips['p_original'][row]:.2f}", float(strips["p_original"][row]))
        for f in range(count):
            p = float(strips["predictions"][row, f])
            name = "counterfactual\n" if f == count - 1 else ""
            _cell(axes[row, first_frame + f], _grey(frames[f], low, high),
                  f"{name}p {p:.2f}\nλ {_lambda(float(strips['lambdas'][row, f]))}", p)
        picture = compose(x, strips["maps"][row], strips["artefact"][row], strips["region"][row])
        axes[row, map_col].imshow(picture, interpolation="nearest")
        axes[row, map_col].set_title(f"map\n{map_name}", fontsize=5.5, fontweight="normal", linespacing=1.15, pad=2)
    top = axes[0, first_frame].get_position()
    right = axes[0, first_frame + count - 1].get_position()
    fig.text((top.x0 + right.x1) / 2, top.y1 + 0.3 / height, "frames x_λ: λ = 0 (reconstruction)  →  λ_low (counterfactual)",
             ha="center", va="bottom", fontsize=6.5, fontweight="bold")
    changed = reconstruction_changes(strips)
    if changed:
        figure.notes.append(changed)
    statuses = [str(s) for s in strips["status"]]
    if any(s != "reached" for s in statuses):
        figure.notes.append("partial: p fell by less than the search rule's drop before it stopped; unchanged: the shift did not move p.")
    sha = str(strips["model_sha256"])
    if sha and sha != str(get(results, "model", "sha256") or sha):
        figure.notes.append("These strips were computed for another model than this report's; rerun `audit run`.")
    return plot.finish(figure, fig)


#: |p(x) − p(D(E(x)))| above which the reconstruction, not the shift, moved the prediction
RECONSTRUCTION_SHIFT = 0.25


def reconstruction_changes(strips: dict[str, np.ndarray]) -> str | None:
    """A warning when the autoencoder's reconstruction (frame λ = 0) already moves p by more
    than ``RECONSTRUCTION_SHIFT`` on some rows: then the frames show the autoencoder, not the model."""
    moved = np.abs(np.asarray(strips["p_original"], float) - np.asarray(strips["predictions"], float)[:, 0]) > RECONSTRUCTION_SHIFT
    if not moved.any():
        return None
    return (f"Warning: the autoencoder's reconstruction alone moves p by more than {RECONSTRUCTION_SHIFT} on {int(moved.sum())} "
            f"of {len(moved)} images ({moved.mean():.0%}): their frames show what the autoencoder loses, not what the model "
            "uses; train a better autoencoder (`audit train-autoencoder`, more epochs or a larger --bottleneck).")


def _map_words(name: str) -> str:
    return {
        "max": "max over λ of |x_λ − x_0|",
        "mean": "mean over λ of |x_λ − x_0|",
        "minmax": "|x_λlow − x_λhigh|",
        "sliding": "mean change between consecutive frames",
    }.get(name, name)


def _cell(ax: Any, picture: np.ndarray, title: str, p: float) -> None:
    ax.imshow(picture, interpolation="nearest")
    ax.set_title(plain(title), fontsize=5.5, fontweight="bold" if p < 0.5 else "normal", linespacing=1.15, pad=2,
                 color=style.FAIL if p < 0.5 else "#222222")


@plot.styled
def counterfactuals(results: dict[str, Any], files: RunFiles) -> Figure:
    """The strips, or the "Unavailable" box naming what is missing."""
    method = latentshift_method(results["methods"]) or "latentshift"
    blank = Figure(f"Counterfactuals: {method}", "Latent Shift counterfactual frames and predictions for example images (Cohen et al. 2021).")
    if files.run_dir is None:
        return plot.unavailable(blank, "Unavailable: no run folder was given.")
    strips, reason = load_strips(Path(files.run_dir) / STRIPS)
    if strips is None:
        return plot.unavailable(blank, f"Unavailable: {reason}.")
    if str(strips["method"]) not in results["methods"]:
        return plot.unavailable(blank, f"Unavailable: {Path(files.run_dir) / STRIPS} is for {strips['method']}, which this run did not use; rerun `audit run`.")
    return _strip_figure(strips, results)


def sections(results: dict[str, Any], files: RunFiles) -> list[tuple[str, str, list[Figure]]]:
    """The counterfactual section, or none when no Latent Shift method was run."""
    if latentshift_method(results["methods"]) is None:
        return []
    return [(HEADING, INTRODUCTION, [counterfactuals(results, files)])]
