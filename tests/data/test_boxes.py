"""Region masks from a bounding-box CSV: the drawing rule against hand-drawn arrays, clipping
counts, the CSV's spellings and chunks, every bad input as one line through ``audit run``, and
a run with boxes against the same run with the equivalent mask PNGs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import average_precision_score

from audit.cli.main import main
from audit.data import boxes as boxes_module
from audit.data.boxes import draw_boxes, read_boxes
from audit.data.dataset import open_dataset
from audit.errors import AuditError
from tests.conftest import assert_one_line_error

HEADER = "path,x,y,width,height,label\n"


def test_boxes_draw_the_pixels_they_overlap_clipped_to_the_image() -> None:
    boxes = np.array([
        [1, 1, 2, 2],          # integers: columns 1-2, rows 1-2
        [4.5, 0.2, 0.25, 1],   # fractional: every pixel it overlaps, column 4, rows 0-1
        [6, 3, 5, 9],          # crosses the right and bottom border: clipped
        [-3, -3, 2, 2],        # wholly outside: nothing, counted twice
        [0, 4, 1e300, 1e300],  # enormous: the bottom row, clipped, allocates nothing beyond the image
    ], dtype=np.float64)
    drawn = draw_boxes(boxes, (5, 7))
    expected = np.array([
        [0, 0, 0, 0, 1, 0, 0],
        [0, 1, 1, 0, 1, 0, 0],
        [0, 1, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 1],
        [1, 1, 1, 1, 1, 1, 1],
    ], dtype=bool)
    np.testing.assert_array_equal(drawn.mask, expected)
    assert (drawn.clipped, drawn.outside) == (3, 1)
    assert draw_boxes(np.zeros((0, 4)), (2, 3)).mask.shape == (2, 3)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    for rel, shape in (("cat/a.png", (6, 8)), ("cat/b.png", (6, 8)), ("dog/c.png", (12, 16))):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(root / rel, np.full(shape, 100, np.uint8))
    return root


def test_rows_union_spellings_and_unmatched_paths(tree: Path, tmp_path: Path, monkeypatch) -> None:
    csv = tmp_path / "boxes.csv"
    csv.write_text("\ufeff path , x,y ,width,height,label,extra\n"
                   "cat/a.png,1,1,2,3,x,1\n"
                   "cat/a.png,1,1,2,3,x,2\n"      # a repeated box: harmless
                   "./cat/a.png,6,4,5,5,y,3\n"    # another spelling, crosses the border
                   "\n"                           # a blank line
                   "cat/b.png,,,,,,\n"            # listed without a box
                   "elsewhere/z.png,1,1,1,1,,\n"  # not in the dataset: counted
                   "dog/c.png,2,2,4,4,z,\n")
    for chunk_rows in (100_000, 2):  # chunks of two rows give the same boxes
        monkeypatch.setattr(boxes_module, "CHUNK_ROWS", chunk_rows)
        dataset = open_dataset(tree, size=(6, 8), channels=1, regions=csv)
        assert dataset.region_boxes.describe() == {"file": str(csv), "rows": 6, "images": 3, "unmatched": 1,
                                                   "first_unmatched": "line 7: elsewhere/z.png"}
        (batch,) = dataset.batches(8)
        assert batch.has_region.tolist() == [True, True, True]
        expected_a = np.zeros((6, 8), bool)
        expected_a[1:4, 1:3] = expected_a[4:, 6:] = True
        np.testing.assert_array_equal(batch.region[0], expected_a)
        assert not batch.region[1].any()
        expected_c = np.zeros((6, 8), bool)
        expected_c[1:3, 1:3] = True  # 12×16 drawn at rows/columns 2-5, resized by nearest neighbour to 6×8
        np.testing.assert_array_equal(batch.region[2], expected_c)
        assert (dataset.mask_report.boxes_clipped, dataset.mask_report.boxes_outside) == (1, 0)
        assert dataset.mask_report.resized == 0 and dataset.mask_report.with_region == 3


def test_an_image_the_csv_does_not_name_has_no_region_mask(tree: Path, tmp_path: Path) -> None:
    csv = tmp_path / "boxes.csv"
    csv.write_text(HEADER + "cat/a.png,0,0,1,1,\n")
    (batch,) = open_dataset(tree, size=(6, 8), channels=1, regions=csv).batches(8)
    assert batch.has_region.tolist() == [True, False, False] and batch.region[0].sum() == 1


def test_a_bad_line_is_named_across_chunks(tree: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(boxes_module, "CHUNK_ROWS", 2)
    csv = tmp_path / "boxes.csv"
    csv.write_text(HEADER + "cat/a.png,0,0,1,1,\n" * 4 + "cat/a.png,0,0,-1,1,\n")
    with pytest.raises(AuditError, match=r"line 6: width -1 must be > 0"):
        read_boxes(csv, [("cat/a.png", 0)])


BAD = {
    "missing_column": ("path,x,y,width\ncat/a.png,1,1,2\n", ["no column height", "header path,x,y,width,height"]),
    "non_numeric": (HEADER + "cat/a.png,1,one,2,2,\n", ["line 2", "y 'one' is not a finite number"]),
    "nan_text": (HEADER + "cat/a.png,1,1,nan,2,\n", ["line 2", "width 'nan' is not a finite number"]),
    "infinite": (HEADER + "cat/a.png,1,1,2,1e999,\n", ["line 2", "height '1e999' is not a finite number"]),
    "partly_empty": (HEADER + "cat/a.png,1,,2,2,\n", ["line 2", "y is empty", "leave all four empty"]),
    "negative_size": (HEADER + "cat/a.png,1,1,2,2,\ncat/b.png,1,1,-2,2,\n", ["line 3", "width -2 must be > 0"]),
    "zero_size": (HEADER + "cat/a.png,1,1,2,0,\n", ["line 2", "height 0 must be > 0"]),
    "empty_path": (HEADER + ",1,1,2,2,\n", ["line 2", "the path is empty"]),
    "only_header": (HEADER, ["no boxes"]),
    "no_match": (HEADER + "train/x.png,1,1,2,2,\n", ["none of its 1 rows", "line 2: train/x.png", "--data root"]),
    "short_row": (HEADER + "cat/a.png,1,1\n", ["line 2", "width is empty"]),
    "open_quote": (HEADER + 'cat/a.png,"1,1,2,2,\n', ["not a readable CSV"]),
    "empty_file": ("", ["not a readable CSV"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_box_csv_is_one_line_and_exit_2(case: str, tree: Path, tiny_model_files, tmp_path: Path, capsys) -> None:
    text, words = BAD[case]
    csv = tmp_path / "bad.csv"
    csv.write_text(text)
    code = main([str(a) for a in ["run", tiny_model_files["onnx"], "--data", tree, "--regions", csv, "--out",
                                  tmp_path / "out", "--quiet"]])
    assert_one_line_error(code, capsys.readouterr().err, "bad.csv", *words)


def test_a_csv_that_is_not_utf8_is_one_line(tree: Path, tiny_model_files, tmp_path: Path, capsys) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_bytes(HEADER.encode() + b"cat/\xe9.png,1,1,2,2,\n")
    code = main([str(a) for a in ["run", tiny_model_files["onnx"], "--data", tree, "--regions", csv, "--out",
                                  tmp_path / "out", "--quiet"]])
    assert_one_line_error(code, capsys.readouterr().err, "bad.csv", "not a readable CSV")


@pytest.fixture(scope="module")
def box_data(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The synthetic valid images, every third one doubled to 56×56 (so its mask is resized),
    with random boxes (some crossing the border, some images without any, one listed without a
    box) as a CSV and as the equivalent mask PNGs drawn by hand with numpy slices."""
    root = tmp_path_factory.mktemp("boxes")
    images, masks = root / "images", root / "masks"
    rng = np.random.default_rng(0)
    rows = []
    for i, source in enumerate(sorted((synthetic_root / "valid" / "images").rglob("*.png"))):
        rel = source.relative_to(synthetic_root / "valid" / "images")
        image = iio.imread(source)
        if i % 3 == 0:
            image = np.kron(image, np.ones((2, 2), image.dtype))
        (images / rel).parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(images / rel, image)
        if i % 7 == 6:
            continue  # no boxes, no mask file
        mask = np.zeros(image.shape, np.uint8)
        if i % 7 == 5:
            rows.append(f"{rel.as_posix()},,,,,")
        for _ in range(int(rng.integers(1, 3)) if i % 7 != 5 else 0):
            x, y = (int(v) for v in rng.integers(-4, image.shape[1] - 2, 2))
            w, h = (int(v) for v in rng.integers(1, image.shape[0] // 2, 2))
            mask[max(y, 0):max(y + h, 0), max(x, 0):max(x + w, 0)] = 255
            rows.append(f"{rel.as_posix()},{x},{y},{w},{h},opacity")
        (masks / rel).parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(masks / rel, mask)
    (root / "boxes.csv").write_text("path,x,y,width,height,label\n" + "\n".join(rows) + "\n")
    return {"images": images, "masks": masks, "csv": root / "boxes.csv", "root": root}


def test_a_run_with_boxes_equals_the_run_with_the_drawn_masks(box_data, tiny_model_files, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    outputs = {}
    for name, regions in (("boxes", box_data["csv"]), ("masks", box_data["masks"])):
        args = ["run", tiny_model_files["onnx"], "--data", box_data["images"], "--regions", regions, "--method", "gradient",
                "--method", "grad-cam", "--randomization-images", "0", "--batch-size", "5", "--target", "0",
                "--out", tmp_path / name, "--quiet"]
        assert main([str(a) for a in args]) == 0
        outputs[name] = (pd.read_csv(tmp_path / name / "per_image.csv"), json.loads((tmp_path / name / "results.json").read_text()))
    (boxes, with_boxes), (masks, with_masks) = outputs["boxes"], outputs["masks"]
    region_columns = ["path", "region_pixels", "ablation_region_same", "ablation_region_delta",
                      *[c for c in masks if ".region_" in c or c.endswith(".pointwise_hit")]]
    assert sum(c.endswith(".pointwise_hit") for c in region_columns) == 2
    pd.testing.assert_frame_equal(boxes[region_columns], masks[region_columns])
    for method in ("gradient", "grad-cam"):
        assert with_boxes["methods"][method]["region"] == with_masks["methods"][method]["region"]
    assert with_boxes["data"]["with_region"] == with_masks["data"]["with_region"] == 21
    assert with_masks["data"]["region_boxes"] is None
    listed = pd.read_csv(box_data["csv"])
    shapes = np.array([iio.imread(box_data["images"] / p).shape for p in listed.path])
    clipped = (listed.x < 0) | (listed.y < 0) | (listed.x + listed.width > shapes[:, 1]) | (listed.y + listed.height > shapes[:, 0])
    outside = (listed.x + listed.width <= 0) | (listed.y + listed.height <= 0)  # x, y are below the image's sides
    assert clipped.sum() > outside.sum() > 0
    assert with_boxes["data"]["region_boxes"] == {
        "file": str(box_data["csv"]), "rows": len(listed), "images": 21, "unmatched": 0, "first_unmatched": None,
        "clipped": int(clipped.sum()), "outside": int(outside.sum())}
    # the score is the explained class's probability (--target 0; every prediction is 1), here from the torch module on the dataset's batches
    dataset = open_dataset(box_data["images"], size=(28, 28), channels=1)
    with torch.no_grad():
        p0 = {path: p for batch in dataset.batches(64) for path, p in
              zip(batch.paths, torch.softmax(tiny_model_files["module"](torch.from_numpy(batch.images).permute(0, 3, 1, 2)), 1)[:, 0].numpy())}
    scores = np.array([p0[path] for path in boxes.path])
    positive = (boxes.region_pixels > 0).to_numpy()
    for method in ("gradient", "grad-cam"):
        detection = with_boxes["methods"][method]["region"]["pointwise_detection"]
        hits = boxes[f"{method}.pointwise_hit"].to_numpy()
        assert detection["hits"] == hits.sum() > 0 and detection["positives"] == positive.sum() > 0
        assert detection["images"] == 24 and detection["score"] == "probability of the target class"
        assert detection["map"] == pytest.approx(average_precision_score(hits, scores) * hits.sum() / positive.sum(), abs=1e-9)
