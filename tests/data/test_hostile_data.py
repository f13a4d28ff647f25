"""Hostile data from issue 13, as real files on disk: images above the pixel limit (refused from
the header, before any allocation), zero-size images, absurd or mixed manifest labels, Latin-1
manifests, file names that are not UTF-8, and mask flags that would allocate terabytes."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from audit.cli.main import main
from audit.data.dataset import open_dataset
from audit.data.names import escape_path
from audit.data.readers import NpyReader, PngReader, JpegReader, TiffReader
from audit.errors import AuditError
from audit.limits import MAX_IMAGE_PIXELS
from tests.conftest import assert_one_line_error

BAD_NAME = b"\xff\xfe.png"  # not UTF-8: Python holds it as "\udcff\udcfe.png"
BAD_NAME_ESCAPED = "\\xff\\xfe.png"  # what every output writes (names.escape_path)


# --- real hostile files --------------------------------------------------------------------------


def write_tiff_bomb(path: Path, side: int = 20000) -> Path:
    """A valid zlib TIFF of side × side zeros, about 400 KB on disk (the issue's 389 KB file):
    one compressed all-zero 2048² tile, written for every tile position."""
    tile = zlib.compress(bytes(2048 * 2048))
    count = (-(-side // 2048)) ** 2
    tifffile.imwrite(path, data=iter([tile] * count), shape=(side, side), dtype="uint8", tile=(2048, 2048), compression="zlib")
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png(path: Path, width: int, height: int, rows: int | None = None) -> Path:
    """A grey 8-bit PNG of zeros written chunk by chunk (never held in memory); ``rows`` < height
    writes only that many rows of pixel data (a truncated stream)."""
    deflate, row = zlib.compressobj(1), bytes(width + 1)
    data = b"".join(deflate.compress(row) for _ in range(height if rows is None else rows)) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b""))
    return path


def write_npy_header(path: Path, shape: tuple[int, ...], dtype: str = "|u1", payload: bytes = b"") -> Path:
    """An NPY file whose header claims ``shape`` (numpy's own header writer), followed by ``payload``."""
    with path.open("wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": dtype, "fortran_order": False, "shape": shape})
        f.write(payload)
    return path


def write_jpeg_claiming(path: Path, side: int) -> Path:
    """A real 8×8 JPEG whose frame header (SOF0) is edited to claim side × side pixels."""
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path, format="JPEG")
    data = bytearray(path.read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", side, side)
    path.write_bytes(bytes(data))
    return path


def peak_bytes(action) -> tuple[object, int]:
    """``action()``'s result (or the exception it raised) and the peak memory it allocated
    through Python and numpy (both report to tracemalloc)."""
    tracemalloc.start()
    try:
        try:
            result = action()
        except Exception as exc:  # the outcome under test
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def run(args: list, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err



def valid_folder(synthetic_root: Path, target: Path, per_class: int = 3) -> Path:
    """A class folder dataset with ``per_class`` real synthetic images per class."""
    source = synthetic_root / "valid" / "images"
    for folder in sorted(source.iterdir()):
        (target / folder.name).mkdir(parents=True)
        for image in sorted(folder.iterdir())[:per_class]:
            shutil.copy(image, target / folder.name / image.name)
    return target


# --- 1. one pixel limit, checked from the header -------------------------------------------------


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(
    "name, write, reader",
    [
        ("bomb.tif", lambda p: write_tiff_bomb(p), TiffReader()),
        ("bomb.png", lambda p: write_png(p, 10000, 10000), PngReader()),  # 1.1x: Pillow only warns
        ("bomb4x.png", lambda p: write_png(p, 20000, 20000, rows=16), PngReader()),  # Pillow refuses
        ("bomb.jpg", lambda p: write_jpeg_claiming(p, 60000), JpegReader()),
        ("huge.npy", lambda p: write_npy_header(p, (100000, 100000)), NpyReader()),
        ("channels.npy", lambda p: write_npy_header(p, (5000, 5000, 100)), NpyReader()),
    ],
)
def test_images_above_the_pixel_limit_are_refused_before_decoding(name, write, reader, tmp_path) -> None:
    path = write(tmp_path / name)
    assert path.stat().st_size < 1_000_000  # small on disk, gigabytes decoded
    outcome, peak = peak_bytes(lambda: reader.read(path))
    assert isinstance(outcome, AuditError), outcome
    assert str(path) in str(outcome) and ("above the limit" in str(outcome) or "twice the limit" in str(outcome))
    assert peak < 20_000_000, peak  # nothing of the image's size was allocated


def test_the_limit_is_the_shared_constant_at_its_boundary(tmp_path) -> None:
    """An NPY of exactly MAX_IMAGE_PIXELS pixels passes the header check (then fails only for
    missing data); one pixel more is refused as too large."""
    at, above = (MAX_IMAGE_PIXELS, 1), (MAX_IMAGE_PIXELS + 1, 1)
    with pytest.raises(AuditError, match="shorter than its header"):
        NpyReader().read(write_npy_header(tmp_path / "at.npy", at))
    with pytest.raises(AuditError, match=f"{MAX_IMAGE_PIXELS + 1:,} pixels is above the limit of {MAX_IMAGE_PIXELS:,}"):
        NpyReader().read(write_npy_header(tmp_path / "above.npy", above))


def test_a_truncated_npy_is_refused_before_numpy_allocates_its_header_shape(tmp_path) -> None:
    path = write_npy_header(tmp_path / "short.npy", (9000, 9000), "<f8", payload=b"\0" * 64)
    outcome, peak = peak_bytes(lambda: NpyReader().read(path))
    assert isinstance(outcome, AuditError) and "truncated" in str(outcome)
    assert peak < 5_000_000  # numpy's fromfile would reserve the header's 648 MB first


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_dataset_skips_and_lists_oversized_images_and_masks(tmp_path) -> None:
    root = tmp_path / "data"
    (root / "cls").mkdir(parents=True)
    good = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 4)
    Image.fromarray(good).save(root / "cls" / "a.png")
    Image.fromarray(good).save(root / "cls" / "b.png")
    write_tiff_bomb(root / "cls" / "c.tif")
    write_npy_header(root / "cls" / "d.npy", (100000, 100000))
    masks = tmp_path / "masks" / "cls"
    masks.mkdir(parents=True)
    write_tiff_bomb(masks / "a.tif")  # a mask above the limit: unreadable, the image stays
    Image.fromarray((good > 100).astype(np.uint8) * 255).save(masks / "b.png")
    ds = open_dataset(root, size=(8, 8), channels=1, masks=tmp_path / "masks")
    (batch,), peak = peak_bytes(lambda: list(ds.batches(4)))
    assert peak < 50_000_000, peak
    assert batch.paths == ["cls/a.png", "cls/b.png"]
    np.testing.assert_allclose(batch.images[0, :, :, 0], good / 255.0, atol=1e-6)
    assert batch.has_artefact.tolist() == [False, True]
    assert [s.path for s in ds.skipped] == ["cls/c.tif", "cls/d.npy"]
    assert all("above the limit" in s.reason for s in ds.skipped)
    (mask,) = ds.mask_report.unreadable
    assert mask.path == str(masks / "a.tif") and "above the limit" in mask.reason


def test_a_plugin_readers_oversized_or_shapeless_array_is_skipped(tmp_path) -> None:
    """Dataset checks what any reader returns: a reader (standing in for a plugin) that returns
    an image above the limit, a 4-D array or a scalar gets those images skipped and listed."""

    class Returns:
        extensions = (".raw",)

        def read(self, path: Path) -> np.ndarray:
            kind = path.stem
            if kind == "wide":  # a broadcast view: no memory behind its 10^10 pixels
                return np.broadcast_to(np.float32(0.5), (100000, 100000))
            if kind == "stack":
                return np.zeros((2, 4, 4, 1), np.float32)
            if kind == "scalar":
                return np.float32(0.5)
            return np.full((4, 4), 0.25, np.float32)

    (tmp_path / "c").mkdir()
    stems = ("good", "wide", "stack", "scalar")
    for stem in stems:
        (tmp_path / "c" / f"{stem}.raw").write_bytes(b"x")
    (tmp_path / "list.csv").write_text("path\n" + "".join(f"c/{stem}.raw\n" for stem in stems))
    ds = open_dataset(tmp_path / "list.csv", size=(4, 4), channels=1)
    ds._readers = {".raw": Returns()}
    (batch,) = list(ds.batches(8))
    assert batch.paths == ["c/good.raw"]
    reasons = {s.path: s.reason for s in ds.skipped}
    assert "above the limit" in reasons["c/wide.raw"]
    assert "(2, 4, 4, 1)" in reasons["c/stack.raw"] and "float32" in reasons["c/scalar.raw"]


# --- 2. zero-size images -----------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (5, 0), (4, 4, 0)])
def test_zero_size_images_are_skipped_and_listed(shape, tmp_path) -> None:
    (tmp_path / "c").mkdir()
    np.save(tmp_path / "c" / "empty.npy", np.zeros(shape, np.uint8))
    np.save(tmp_path / "c" / "fine.npy", np.full((3, 3), 255, np.uint8))
    ds = open_dataset(tmp_path, size=(6, 6), channels=1)
    (batch,) = list(ds.batches(4))
    assert batch.paths == ["c/fine.npy"] and np.all(batch.images == 1.0)
    (skipped,) = ds.skipped
    assert skipped.path == "c/empty.npy" and "has no pixels" in skipped.reason


# --- 3. manifests ----------------------------------------------------------------------------------


def manifest(tmp_path: Path, text: str | bytes) -> Path:
    (tmp_path / "a.png").write_bytes(b"")
    path = tmp_path / "list.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_a_label_of_ten_to_the_twelve_is_refused_at_once(tmp_path) -> None:
    path = manifest(tmp_path, "path,label\na.png,0\nb.png,1000000000000\n")
    outcome, peak = peak_bytes(lambda: open_dataset(path, size=(4, 4), channels=1))
    assert isinstance(outcome, AuditError)
    assert str(outcome).startswith(f"{path}, line 3: label 1000000000000 is not a class index from 0 to 65535")
    assert peak < 1_000_000


def test_the_largest_class_index_is_accepted(tmp_path) -> None:
    ds = open_dataset(manifest(tmp_path, "path,label\na.png,65535\nb.png,\n"), size=(4, 4), channels=1)
    assert len(ds.classes) == 65536 and ds.classes[-1] == "65535" and ds.entries == [("a.png", 65535), ("b.png", -1)]


def test_labels_mixing_indices_and_names_name_the_manifest_and_rows(tmp_path) -> None:
    path = manifest(tmp_path, "path,label\na.png,cat\nb.png,\nc.png,1\nd.png,dog\n")
    with pytest.raises(AuditError) as caught:
        open_dataset(path, size=(4, 4), channels=1)
    assert str(caught.value) == (
        f"{path}: labels mix class indices and names (line 4: '1', line 2: 'cat'); use one kind in the whole label column"
    )


def test_minus_one_is_unknown_among_names_too(tmp_path) -> None:
    ds = open_dataset(manifest(tmp_path, "path,label\na.png,dog\nb.png,-1\nc.png,cat\n"), size=(4, 4), channels=1)
    assert ds.classes == ["cat", "dog"] and [label for _, label in ds.entries] == [1, -1, 0]


def test_a_latin1_manifest_names_the_file_and_line(tmp_path) -> None:
    path = manifest(tmp_path, "path,label\na.png,chat\nb.png,caf\u00e9\n".encode("latin-1"))
    with pytest.raises(AuditError) as caught:
        open_dataset(path, size=(4, 4), channels=1)
    assert str(caught.value) == f"{path}, line 3: byte 0xe9 is not UTF-8; save the manifest as UTF-8"


def test_a_utf8_manifest_with_a_bom_reads_and_a_csv_error_is_one_line(tmp_path) -> None:
    path = manifest(tmp_path, "\ufeffpath,label\na.png,caf\u00e9\n".encode("utf-8"))
    assert open_dataset(path, size=(4, 4), channels=1).classes == ["caf\u00e9"]
    path.write_bytes(b"path,label\na.png,0\n" + b"b" * 200_000 + b".png,1\n")
    with pytest.raises(AuditError, match=r"list.csv, line 3: field larger than field limit \(131072\); fix the CSV$"):
        open_dataset(path, size=(4, 4), channels=1)


def test_a_manifest_path_with_a_nul_or_newline_is_skipped_and_listed_escaped(tmp_path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((2, 2), np.uint8))
    path = manifest(tmp_path, b'path,label\na.npy,0\nb\0.npy,1\n"c\n.npy",1\n')
    ds = open_dataset(path, size=(2, 2), channels=1)
    (batch,) = list(ds.batches(4))
    assert batch.paths == ["a.npy"]
    assert [(s.path, s.reason) for s in ds.skipped] == [("b\\x00.npy", "file not found"), ("c\\x0a.npy", "file not found")]


@pytest.mark.parametrize(
    "text, needles",
    [
        (b"path,label\na.png,1000000000000\n", ["list.csv, line 2", "label 1000000000000", "65535"]),
        (b"path,label\na.png,0\nb.png,cat\n", ["list.csv", "line 2: '0'", "line 3: 'cat'", "use one kind"]),
        (b"path,label\na.png,\xe9t\xe9\n", ["list.csv, line 2", "save the manifest as UTF-8"]),
    ],
)
def test_bad_manifests_exit_2_with_one_line(text, needles, tiny_model_files, tmp_path, capsys) -> None:
    path = manifest(tmp_path, text)
    code, out, err = run(["run", tiny_model_files["onnx"], "--data", path, "--out", tmp_path / "out", "--quiet"], capsys)
    assert_one_line_error(code, out + err, *needles)
    assert not (tmp_path / "out" / "results.json").exists()


def test_a_huge_label_exits_2_as_a_real_process(tiny_model_files, tmp_path) -> None:
    path = manifest(tmp_path, b"path,label\na.png,1000000000000\n")
    done = subprocess.run(
        [Path(sys.executable).with_name("audit"), "run", str(tiny_model_files["onnx"]), "--data", str(path), "--out", str(tmp_path / "o"), "--quiet"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr
    assert done.stderr.strip().count("\n") == 0 and "line 2: label 1000000000000" in done.stderr


# --- 4. file names that are not UTF-8 -----------------------------------------------------------------


def test_escape_path_is_the_documented_lossless_rule() -> None:
    assert escape_path("cat/a b.png") == "cat/a b.png"
    assert escape_path("caf\u00e9/\u732b.png") == "caf\u00e9/\u732b.png"  # valid UTF-8 is kept
    assert escape_path(os.fsdecode(b"c/" + BAD_NAME)) == "c/" + BAD_NAME_ESCAPED
    assert escape_path(os.fsdecode(b"a\\xff\n\x7f.png")) == "a\\\\xff\\x0a\\x7f.png"
    assert escape_path(Path(os.fsdecode(b"/d/\xe9"))) == "/d/\\xe9"


@pytest.mark.skipif(sys.platform != "linux", reason="file names are bytes on Linux")
def test_a_run_over_names_that_are_not_utf8_writes_them_escaped(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    """One readable image named b"\\xff\\xfe.png" (with a mask of the same name) and one unreadable
    one named b"x\\xff.png": exit 0, per_image.csv, results.json and the PDF hold the escaped
    names, and the readable image was audited with its mask."""
    from pypdf import PdfReader

    data = valid_folder(synthetic_root, tmp_path / "data", per_class=2)
    masks = tmp_path / "masks"
    source = synthetic_root / "valid" / "images" / "0-one-cross"
    first = sorted(source.iterdir())[0]
    cls = os.fsencode(data) + b"/0-one-cross/"
    shutil.copy(first, cls + BAD_NAME)
    (masks / "0-one-cross").mkdir(parents=True)
    shutil.copy(synthetic_root / "valid" / "artefacts" / "0-one-cross" / first.name, os.fsencode(masks) + b"/0-one-cross/" + BAD_NAME)
    with open(os.fsencode(data) + b"/1-two-crosses/x\xff.png", "wb") as f:
        f.write(b"\x89PNG not really")
    out = tmp_path / "out"
    args = ["run", tiny_model_files["onnx"], "--data", data, "--masks", masks, "--out", out, "--quiet",
            "--method", "gradient", "--randomization-images", "0", "--report", out / "report.pdf"]
    code, _, err = run(args, capsys)
    assert code == 0, err
    table = pd.read_csv(out / "per_image.csv", encoding="utf-8")
    row = table[table.path == "0-one-cross/" + BAD_NAME_ESCAPED]
    assert len(row) == 1 and int(row.artefact_pixels.iloc[0]) > 0
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert [s["path"] for s in results["data"]["skipped"]] == ["1-two-crosses/x\\xff.png"]
    assert results["data"]["with_artefact"] == 1 and results["data"]["images"] == 5
    text = "".join(page.extract_text() for page in PdfReader(out / "report.pdf").pages)
    assert "x\\xff.png" in text


@pytest.mark.skipif(sys.platform != "linux", reason="file names are bytes on Linux")
def test_a_class_folder_name_that_is_not_utf8_is_read_and_named_escaped(tmp_path) -> None:
    folder = os.fsencode(tmp_path) + b"/\xe9t\xe9"
    os.mkdir(folder)
    np.save(os.fsdecode(folder + b"/a.npy"), np.full((2, 2), 255, np.uint8))
    ds = open_dataset(tmp_path, size=(2, 2), channels=1)
    (batch,) = list(ds.batches(1))
    assert ds.classes == ["\\xe9t\\xe9"] and batch.paths == ["\\xe9t\\xe9/a.npy"] and batch.labels.tolist() == [0]
    assert ds.root == str(tmp_path)


# --- 5. mask flags -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flag, value, needles",
    [
        ("--mask-dilate", "1000000", ["--mask-dilate 1000000", "from 0 to 28"]),
        ("--mask-blur", "inf", ["--mask-blur inf", "from 0 to 7"]),
        ("--mask-blur", "7.5", ["--mask-blur 7.5", "from 0 to 7"]),
    ],
)
def test_mask_growth_flags_out_of_range_exit_2_before_the_run(flag, value, needles, synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    args = ["run", tiny_model_files["onnx"], "--data", synthetic_root / "valid" / "images",
            "--masks", synthetic_root / "valid" / "artefacts", "--out", out, "--quiet", flag, value]
    (code, out_text, err), peak = peak_bytes(lambda: run(args, capsys))
    assert_one_line_error(code, out_text + err, *needles)
    assert peak < 100_000_000 and not (out / "results.json").exists()


@pytest.mark.parametrize("dilate, blur", [(-1, 0.0), (29, 0.0), (2.5, 0.0), (0, float("nan")), (0, -0.1)])
def test_open_dataset_refuses_mask_growth_outside_its_range(dilate, blur, tmp_path) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    flag = "--mask-dilate" if blur == 0 else "--mask-blur"
    with pytest.raises(AuditError, match=f"^{flag} "):
        open_dataset(tmp_path, size=(28, 20), channels=1, mask_dilate=dilate, mask_blur=blur)


def test_the_largest_growth_covers_the_image_from_one_pixel(tmp_path) -> None:
    """The bounds are where growth saturates: dilation by the side, or σ = side / 4 (4σ pixels),
    turns a single corner pixel into a mask over the whole image (checked with scipy)."""
    from scipy import ndimage

    (tmp_path / "d" / "c").mkdir(parents=True)
    np.save(tmp_path / "d" / "c" / "a.npy", np.zeros((8, 8), np.uint8))
    (tmp_path / "m" / "c").mkdir(parents=True)
    corner = np.zeros((8, 8), np.uint8)
    corner[0, 0] = 1
    np.save(tmp_path / "m" / "c" / "a.npy", corner)
    for dilate, blur in [(8, 0.0), (0, 2.0)]:
        ds = open_dataset(tmp_path / "d", size=(8, 8), channels=1, masks=tmp_path / "m", mask_dilate=dilate, mask_blur=blur)
        (batch,) = list(ds.batches(1))
        assert batch.artefact.all()
    reference = ndimage.gaussian_filter(corner.astype(float), sigma=2.0, truncate=4.0) > 0
    assert reference.all()


# --- 6. a folder of hostile files through the whole run -------------------------------------------------


def write_hostile_files(folder: Path) -> list[str]:
    """One of each hostile kind; returns their names."""
    folder.mkdir(parents=True, exist_ok=True)
    before = set(folder.iterdir())
    write_tiff_bomb(folder / "bomb.tif")
    write_png(folder / "bomb.png", 20000, 20000, rows=16)
    write_npy_header(folder / "huge.npy", (100000, 100000))
    np.save(folder / "empty.npy", np.zeros((0, 0), np.uint8))
    write_npy_header(folder / "short.npy", (28, 28), "<f4", payload=b"\0" * 10)
    (folder / "random.jpg").write_bytes(np.random.default_rng(0).bytes(300))
    (folder / "cut.png").write_bytes(write_png(folder / "cut.png", 28, 28).read_bytes()[:40])
    return sorted(p.name for p in set(folder.iterdir()) - before)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_hostile_files_among_good_ones_are_skipped_and_listed(synthetic_root, tiny_model_files, tmp_path, capsys) -> None:
    data = valid_folder(synthetic_root, tmp_path / "data")
    hostile = write_hostile_files(data / "0-one-cross")
    out = tmp_path / "out"
    args = ["run", tiny_model_files["onnx"], "--data", data, "--out", out, "--quiet", "--method", "gradient", "--randomization-images", "0"]
    code, _, err = run(args, capsys)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    skipped = {s["path"]: s["reason"] for s in results["data"]["skipped"]}
    assert sorted(skipped) == [f"0-one-cross/{name}" for name in hostile]
    assert results["data"]["images"] == 6 and len(pd.read_csv(out / "per_image.csv")) == 6
    assert "has no pixels" in skipped["0-one-cross/empty.npy"] and "above the limit" in skipped["0-one-cross/bomb.tif"]


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_folder_of_only_hostile_files_exits_2(tiny_model_files, tmp_path, capsys) -> None:
    write_hostile_files(tmp_path / "data" / "c")
    code, out, err = run(["run", tiny_model_files["onnx"], "--data", tmp_path / "data", "--out", tmp_path / "o", "--quiet"], capsys)
    assert_one_line_error(code, out + err, str(tmp_path / "data"))
