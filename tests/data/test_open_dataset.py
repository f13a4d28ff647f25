"""open_dataset: indexing, streaming batches, masks, bad input."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from audit.data.dataset import Skipped, open_dataset
from audit.data.readers import PngReader, readers
from audit.errors import AuditError


def png(path: Path, array) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, np.asarray(array, dtype=np.uint8))
    return path


def grey(value: int, size: int = 4) -> np.ndarray:
    return np.full((size, size), value, dtype=np.uint8)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/cat/{a,b}.png (values 51, 102), root/dog/c.png (255), plus a non-image file."""
    root = tmp_path / "images"
    png(root / "cat" / "a.png", grey(51))
    png(root / "cat" / "b.png", grey(102))
    png(root / "dog" / "c.png", grey(255))
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


def all_batches(ds, batch_size: int = 8) -> list:
    return list(ds.batches(batch_size))


def test_folder_classes_entries_and_batch_contract(tree: Path):
    ds = open_dataset(tree, size=(4, 4), channels=1)
    assert ds.classes == ["cat", "dog"]
    assert ds.entries == [("cat/a.png", 0), ("cat/b.png", 0), ("dog/c.png", 1)]
    assert len(ds) == 3
    (batch,) = all_batches(ds)
    assert batch.paths == ["cat/a.png", "cat/b.png", "dog/c.png"]
    assert batch.labels.dtype == np.int64 and batch.labels.tolist() == [0, 0, 1]
    assert batch.images.dtype == np.float32 and batch.images.shape == (3, 4, 4, 1)
    np.testing.assert_allclose(batch.images[:, 0, 0, 0], [0.2, 0.4, 1.0], atol=1e-7)
    assert batch.artefact.shape == (3, 4, 4) and batch.artefact.dtype == bool and not batch.artefact.any()
    assert batch.region.shape == (3, 4, 4) and not batch.region.any()
    assert batch.has_artefact.tolist() == [False] * 3 and batch.has_region.tolist() == [False] * 3


def test_batches_are_full_and_last_is_the_rest(tree: Path):
    png(tree / "dog" / "d.png", grey(0))
    sizes = [len(b) for b in open_dataset(tree, size=(4, 4), channels=1).batches(3)]
    assert sizes == [3, 1]


@pytest.mark.parametrize("source, size", [((8, 8), (3, 5)), ((6, 4), (17, 9)), ((40, 30), (7, 7)), ((12, 3), (5, 8))])
def test_images_resized_as_pillow_float_bilinear(tmp_path: Path, source, size):
    """Shrinking, enlarging and both at once match Pillow's BILINEAR filter on float ("F")
    images, an independent implementation of the same anti-aliased filter (no 8-bit rounding)."""
    image = np.random.default_rng(0).integers(0, 256, size=source, dtype=np.uint8)
    png(tmp_path / "d" / "x" / "a.png", image)
    (batch,) = all_batches(open_dataset(tmp_path / "d", size=size, channels=1))
    as_float = Image.fromarray((image / 255.0).astype(np.float32), mode="F")
    reference = np.asarray(as_float.resize((size[1], size[0]), Image.BILINEAR))
    assert batch.images.shape == (1, *size, 1)
    np.testing.assert_allclose(batch.images[0, :, :, 0], reference, atol=1e-6)


def test_enlarging_two_pixels_to_four_by_hand(tmp_path: Path):
    """Pixel centres at (i + 0.5)/2 − 0.5 = −0.25, 0.25, 0.75, 1.25; the border clamps: 0, ¼, ¾, 1."""
    png(tmp_path / "d" / "x" / "a.png", np.array([[0, 255]], dtype=np.uint8))
    (batch,) = all_batches(open_dataset(tmp_path / "d", size=(1, 4), channels=1))
    np.testing.assert_allclose(batch.images[0, 0, :, 0], [0, 0.25, 0.75, 1], atol=1e-7)


def test_rgb_image_for_three_channels(tmp_path: Path):
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[..., 1] = 255
    png(tmp_path / "d" / "x" / "a.png", rgb)
    (batch,) = all_batches(open_dataset(tmp_path / "d", size=(2, 2), channels=3))
    np.testing.assert_array_equal(batch.images[0, 0, 0], [0, 1, 0])


@pytest.mark.parametrize("image, channels, found", [(grey(9), 3, 1), (np.zeros((4, 4, 3)), 1, 3)])
def test_channel_mismatch_names_file_and_both_counts(tmp_path: Path, image, channels, found):
    png(tmp_path / "d" / "x" / "a.png", image)
    ds = open_dataset(tmp_path / "d", size=(4, 4), channels=channels)
    with pytest.raises(AuditError) as info:
        all_batches(ds)
    message = str(info.value)
    assert "a.png" in message
    assert f"image has {found} channel(s) but the model takes {channels}" in message
    assert f"convert the images to {channels} channel(s)" in message


def test_unreadable_image_skipped_with_reason(tree: Path):
    (tree / "cat" / "broken.png").write_bytes(b"not a png")
    ds = open_dataset(tree, size=(4, 4), channels=1)
    assert len(ds) == 4
    (batch,) = all_batches(ds)
    assert batch.paths == ["cat/a.png", "cat/b.png", "dog/c.png"]
    assert [s.path for s in ds.skipped] == ["cat/broken.png"]
    assert ds.skipped[0].reason
    all_batches(ds)  # a second pass reports the same, not twice as much
    assert len(ds.skipped) == 1


def test_strict_mode_raises_on_unreadable_image(tree: Path):
    (tree / "cat" / "broken.png").write_bytes(b"not a png")
    ds = open_dataset(tree, size=(4, 4), channels=1, strict=True)
    with pytest.raises(AuditError, match=r"broken\.png: unreadable"):
        all_batches(ds)


def test_empty_folder_names_folder_and_extensions(tmp_path: Path):
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    (tmp_path / "empty" / "cls" / "readme.txt").write_text("x")
    with pytest.raises(AuditError) as info:
        open_dataset(tmp_path / "empty", size=(4, 4), channels=1)
    message = str(info.value)
    assert str(tmp_path / "empty") in message and "no images found" in message
    assert ".jpg" in message and ".npy" in message and ".png" in message and ".tif" in message


def test_all_images_skipped_is_an_error(tmp_path: Path):
    (tmp_path / "d" / "x").mkdir(parents=True)
    (tmp_path / "d" / "x" / "a.png").write_bytes(b"junk")
    ds = open_dataset(tmp_path / "d", size=(4, 4), channels=1)
    with pytest.raises(AuditError, match=r"all 1 images were skipped \(first: x/a\.png.*supported extensions: .*\.png"):
        all_batches(ds)


def test_missing_root_is_an_error(tmp_path: Path):
    with pytest.raises(AuditError, match="not an image folder or a .csv manifest"):
        open_dataset(tmp_path / "nope", size=(4, 4), channels=1)


def test_streaming_reads_lazily_per_batch(tmp_path: Path, monkeypatch):
    for i in range(10):
        png(tmp_path / "d" / "x" / f"{i:02d}.png", grey(i))
    reads: list[str] = []
    original = PngReader.read
    monkeypatch.setattr(PngReader, "read", lambda self, path: reads.append(path.name) or original(self, path))
    ds = open_dataset(tmp_path / "d", size=(4, 4), channels=1)
    assert reads == []  # opening reads nothing
    stream = ds.batches(3)
    first = next(stream)
    assert reads == ["00.png", "01.png", "02.png"]
    assert first.paths == ["x/00.png", "x/01.png", "x/02.png"]
    next(stream)
    assert len(reads) == 6
    assert sum(len(b) for b in stream) == 4 and len(reads) == 10


# --- masks -----------------------------------------------------------------------------


def test_masks_found_by_relative_path_and_stem_any_extension(tmp_path: Path):
    png(tmp_path / "img" / "cls" / "a.png", grey(9))
    png(tmp_path / "img" / "cls" / "b.png", grey(9))
    np.save(tmp_path / "img" / "cls" / "c.npy", np.zeros((4, 4), np.float32))
    art = np.zeros((4, 4), dtype=np.uint8)
    art[1, 2] = 3  # any non-zero pixel is in the mask
    png(tmp_path / "masks" / "cls" / "a.png", art)
    region = np.zeros((4, 4), dtype=bool)
    region[0] = True
    (tmp_path / "regions" / "cls").mkdir(parents=True)
    np.save(tmp_path / "regions" / "cls" / "b.npy", region)
    png(tmp_path / "regions" / "cls" / "c.png", np.eye(4) * 255)
    ds = open_dataset(
        tmp_path / "img", size=(4, 4), channels=1, masks=tmp_path / "masks", regions=tmp_path / "regions"
    )
    (batch,) = all_batches(ds)
    assert batch.paths == ["cls/a.png", "cls/b.png", "cls/c.npy"]
    assert batch.has_artefact.tolist() == [True, False, False]
    assert batch.has_region.tolist() == [False, True, True]
    np.testing.assert_array_equal(batch.artefact[0], art > 0)
    np.testing.assert_array_equal(batch.region[1], region)
    np.testing.assert_array_equal(batch.region[2], np.eye(4, dtype=bool))
    report = ds.mask_report
    assert (report.with_artefact, report.with_region, report.resized, report.unreadable) == (1, 2, 0, [])


def test_mask_of_other_size_is_resized_nearest_and_counted(tmp_path: Path):
    png(tmp_path / "img" / "cls" / "a.png", grey(9, 4))
    png(tmp_path / "masks" / "cls" / "a.png", [[255, 0], [0, 0]])
    ds = open_dataset(tmp_path / "img", size=(4, 4), channels=1, masks=tmp_path / "masks")
    (batch,) = all_batches(ds)
    expected = np.zeros((4, 4), dtype=bool)
    expected[:2, :2] = True
    np.testing.assert_array_equal(batch.artefact[0], expected)
    assert ds.mask_report.resized == 1


def test_mask_of_image_size_is_not_counted_when_image_is_resized(tmp_path: Path):
    png(tmp_path / "img" / "cls" / "a.png", grey(9, 8))
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[:4, :4] = 1
    png(tmp_path / "masks" / "cls" / "a.png", mask)
    ds = open_dataset(tmp_path / "img", size=(2, 2), channels=1, masks=tmp_path / "masks")
    (batch,) = all_batches(ds)
    np.testing.assert_array_equal(batch.artefact[0], [[True, False], [False, False]])
    assert ds.mask_report.resized == 0


def test_unreadable_mask_listed_and_image_gets_empty_mask(tmp_path: Path):
    png(tmp_path / "img" / "cls" / "a.png", grey(9))
    png(tmp_path / "img" / "cls" / "b.png", grey(9))
    (tmp_path / "masks" / "cls").mkdir(parents=True)
    (tmp_path / "masks" / "cls" / "a.png").write_bytes(b"broken")
    png(tmp_path / "masks" / "cls" / "b.png", np.ones((4, 4)))
    ds = open_dataset(tmp_path / "img", size=(4, 4), channels=1, masks=tmp_path / "masks")
    (batch,) = all_batches(ds)
    assert batch.paths == ["cls/a.png", "cls/b.png"]  # the image itself is kept
    assert not batch.artefact[0].any() and batch.artefact[1].all()
    assert batch.has_artefact.tolist() == [False, True]
    assert [s.path for s in ds.mask_report.unreadable] == [str(tmp_path / "masks" / "cls" / "a.png")]
    assert ds.mask_report.with_artefact == 1


def test_two_mask_files_for_one_image_are_reported(tmp_path: Path):
    png(tmp_path / "img" / "cls" / "a.png", grey(9))
    png(tmp_path / "masks" / "cls" / "a.png", np.ones((4, 4)))
    np.save(tmp_path / "masks" / "cls" / "a.npy", np.ones((4, 4), bool))
    ds = open_dataset(tmp_path / "img", size=(4, 4), channels=1, masks=tmp_path / "masks")
    (batch,) = all_batches(ds)
    assert not batch.has_artefact[0]
    (entry,) = ds.mask_report.unreadable
    assert "several mask files" in entry.reason and "a.npy" in entry.reason and "a.png" in entry.reason


def test_mask_dilate_then_blur_at_model_size(tmp_path: Path):
    png(tmp_path / "img" / "cls" / "a.png", grey(9, 11))
    mask = np.zeros((11, 11), dtype=np.uint8)
    mask[5, 5] = 255
    png(tmp_path / "masks" / "cls" / "a.png", mask)
    png(tmp_path / "regions" / "cls" / "a.png", mask)
    ds = open_dataset(
        tmp_path / "img", size=(11, 11), channels=1, masks=tmp_path / "masks",
        regions=tmp_path / "regions", mask_dilate=1, mask_blur=0.5,
    )
    (batch,) = all_batches(ds)
    expected = np.zeros((11, 11), dtype=bool)
    expected[2:9, 2:9] = True  # 1 pixel of dilation + 2 pixels of blur support
    np.testing.assert_array_equal(batch.artefact[0], expected)
    np.testing.assert_array_equal(batch.region[0], expected)


def test_missing_mask_folder_is_an_error(tree: Path, tmp_path: Path):
    with pytest.raises(AuditError, match="mask folder not found"):
        open_dataset(tree, size=(4, 4), channels=1, masks=tmp_path / "nowhere")


# --- CSV manifests ---------------------------------------------------------------------


def manifest(tmp_path: Path, text: str) -> Path:
    png(tmp_path / "files" / "a.png", grey(51))
    png(tmp_path / "files" / "b.png", grey(102))
    png(tmp_path / "files" / "sub" / "c.png", grey(255))
    path = tmp_path / "files" / "list.csv"
    path.write_text(text)
    return path


def test_csv_with_class_names(tmp_path: Path):
    ds = open_dataset(
        manifest(tmp_path, "path,label\na.png,normal\nb.png,effusion\nsub/c.png,normal\n"),
        size=(4, 4), channels=1,
    )
    assert ds.classes == ["effusion", "normal"]
    assert ds.entries == [("a.png", 1), ("b.png", 0), ("sub/c.png", 1)]
    (batch,) = all_batches(ds)
    assert batch.labels.tolist() == [1, 0, 1]
    np.testing.assert_allclose(batch.images[:, 0, 0, 0], [0.2, 0.4, 1.0], atol=1e-7)


def test_csv_with_integer_labels_and_empty_cells(tmp_path: Path):
    ds = open_dataset(manifest(tmp_path, "label,path\n2,a.png\n,b.png\n0,sub/c.png\n"), size=(4, 4), channels=1)
    assert ds.classes == ["0", "1", "2"]
    assert ds.entries == [("a.png", 2), ("b.png", -1), ("sub/c.png", 0)]


def test_csv_without_label_column_is_unlabelled(tmp_path: Path):
    ds = open_dataset(manifest(tmp_path, "path\na.png\nb.png\n"), size=(4, 4), channels=1)
    assert ds.classes == []
    (batch,) = all_batches(ds)
    assert batch.labels.tolist() == [-1, -1]


def test_csv_missing_path_column(tmp_path: Path):
    csv = manifest(tmp_path, "file,label\na.png,0\n")
    with pytest.raises(AuditError, match=r"list\.csv: no 'path' column \(found: file, label\)"):
        open_dataset(csv, size=(4, 4), channels=1)


def test_csv_bad_rows(tmp_path: Path):
    with pytest.raises(AuditError, match="line 3: path '/abs.png' must be a file path relative"):
        open_dataset(manifest(tmp_path, "path,label\na.png,0\n/abs.png,1\n"), size=(4, 4), channels=1)
    with pytest.raises(AuditError, match="line 2: label -2 is not a class index from 0 to 65535"):
        open_dataset(manifest(tmp_path, "path,label\na.png,-2\n"), size=(4, 4), channels=1)


def test_csv_missing_file_and_unknown_extension_are_skipped(tmp_path: Path):
    csv = manifest(tmp_path, "path,label\na.png,0\ngone.png,1\nnotes.txt,1\n")
    ds = open_dataset(csv, size=(4, 4), channels=1)
    (batch,) = all_batches(ds)
    assert batch.paths == ["a.png"]
    assert ds.skipped[0] == Skipped("gone.png", "file not found")
    assert ds.skipped[1].path == "notes.txt" and "no reader for '.txt'" in ds.skipped[1].reason


def test_csv_masks_relative_to_csv_folder(tmp_path: Path):
    csv = manifest(tmp_path, "path,label\nsub/c.png,0\n")
    png(tmp_path / "masks" / "sub" / "c.png", np.ones((4, 4)) * 255)
    (batch,) = all_batches(open_dataset(csv, size=(4, 4), channels=1, masks=tmp_path / "masks"))
    assert batch.has_artefact.tolist() == [True] and batch.artefact.all()


def test_a_registered_reader_object_serves_its_extension(tmp_path: Path, monkeypatch):
    class Half:
        extensions = (".half",)

        def read(self, path: Path) -> np.ndarray:
            return np.full((2, 2), 0.5, dtype=np.float32)

    monkeypatch.setitem(readers._items, "half", Half())
    monkeypatch.setitem(readers._origin, "half", "test")
    (tmp_path / "d" / "x").mkdir(parents=True)
    (tmp_path / "d" / "x" / "a.half").write_bytes(b"")
    (batch,) = all_batches(open_dataset(tmp_path / "d", size=(2, 2), channels=1))
    assert batch.paths == ["x/a.half"]
    np.testing.assert_array_equal(batch.images[0, :, :, 0], np.full((2, 2), 0.5))


def test_hidden_files_and_folders_and_top_level_images(tree: Path):
    png(tree / "cat" / ".ipynb_checkpoints" / "a.png", grey(1))
    png(tree / "cat" / ".hidden.png", grey(1))
    png(tree / ".trash" / "x.png", grey(1))
    png(tree / "loose.png", grey(1))
    ds = open_dataset(tree, size=(4, 4), channels=1)
    assert ds.classes == ["cat", "dog"]
    assert ds.entries == [("loose.png", -1), ("cat/a.png", 0), ("cat/b.png", 0), ("dog/c.png", 1)]
