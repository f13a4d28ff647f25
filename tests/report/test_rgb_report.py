"""A 3-channel report: every page renders, no word is broken mid-word in the text layer, and
the outlines are drawn in a colour that shows on a red ink mark."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pypdf import PdfReader

from audit.cli.main import main
from audit.report.pdf.definitions import METRICS
from tests.conftest import TinyCNN, export_onnx

METHODS = ["input-x-gradient", "integrated-gradients", "guided-grad-cam"]
SEPARATOR_BREAK = re.compile(r"(?<=[-._/])\n")


def _write(root: Path, count: int = 12, size: int = 32) -> Path:
    """RGB images of two classes on a grey background; a red ink mark (the artefact) in every
    other image, a green blob (the region) in each."""
    rng = np.random.default_rng(0)
    for i in range(count):
        label = i % 2
        image = np.full((size, size, 3), 0.5) + rng.normal(0, 0.05, (size, size, 3))
        region = np.zeros((size, size), bool)
        region[8 + 8 * label : 16 + 8 * label, 10:20] = True
        image[region] = (0.2, 0.8, 0.2)
        artefact = np.zeros((size, size), bool)
        if i % 4 < 2:
            artefact[2:7, 24:30] = True
            image[artefact] = (0.9, 0.05, 0.05)
        for folder, array in (("images", image), ("artefacts", artefact), ("regions", region)):
            path = root / folder / f"c{label}" / f"{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = (np.clip(array, 0, 1) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(path)
    return root


@pytest.fixture(scope="module")
def rgb_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = _write(tmp_path_factory.mktemp("rgb"))
    torch.manual_seed(0)
    model = export_onnx(TinyCNN(channels=3), root / "rgb.onnx", (3, 32, 32))
    out = root / "out"
    code = main([str(a) for a in ["run", model, "--data", root / "images", "--masks", root / "artefacts", "--regions",
                                  root / "regions", "--out", out, "--quiet", "--randomization-images", "2",
                                  "-o", "integrated-gradients.n_steps=4", *sum((["--method", m] for m in METHODS), [])]])
    assert code == 0
    pages = [page.extract_text() for page in PdfReader(out / "report.pdf").pages]
    return out, "\n".join(pages)


def test_every_page_of_a_three_channel_report_renders(rgb_report) -> None:
    out, text = rgb_report
    reader = PdfReader(out / "report.pdf")
    assert len(reader.pages) >= 8
    for number, page in enumerate(reader.pages, start=1):
        assert page.extract_text().strip(), f"page {number} has no text"
    assert sum(len(page.images) for page in reader.pages) >= 8


def test_no_method_name_or_key_is_broken_mid_word(rgb_report) -> None:
    _, text = rgb_report
    joined = SEPARATOR_BREAK.sub("", text).replace("\n", " ")  # a break after - . _ / joins; any other is a space
    for name in METHODS:
        assert name in joined, f"{name} is broken mid-word"
    words = set(joined.split())
    for _, key, _, _ in METRICS:
        for word in key.split():  # a key may hold spaces ("iou / iop / iot"): a line may break there
            assert word in words or any(word in w for w in words), f"{word} of {key!r} is broken mid-word"


def test_outlines_are_not_red_on_a_red_mark(rgb_report) -> None:
    _, text = rgb_report
    caption = " ".join(text.split())
    chosen = re.findall(r"the artefact outlined in ([a-z ]+?) and the region", caption)
    assert chosen and "vermilion" not in chosen, chosen
