"""Built-in image readers: scaling by dtype, channel handling, refusal of bad data."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from PIL import Image

from audit.data.readers import NpyReader, PngReader, TiffReader, JpegReader, readers, readers_by_extension
from audit.errors import AuditError


def test_builtins_are_registered_by_extension():
    assert {"png", "jpeg", "tiff", "npy"} <= set(readers.names())
    table = readers_by_extension()
    assert isinstance(table[".png"], PngReader)
    assert isinstance(table[".jpg"], JpegReader) and isinstance(table[".jpeg"], JpegReader)
    assert isinstance(table[".tif"], TiffReader) and isinstance(table[".tiff"], TiffReader)
    assert isinstance(table[".npy"], NpyReader)


def test_png_uint8_grey(tmp_path: Path):
    iio.imwrite(tmp_path / "a.png", np.array([[0, 51], [255, 102]], dtype=np.uint8))
    out = PngReader().read(tmp_path / "a.png")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0, 0.2], [1, 0.4]], atol=1e-7)


def test_png_uint16(tmp_path: Path):
    iio.imwrite(tmp_path / "a.png", np.array([[0, 65535], [13107, 1]], dtype=np.uint16))
    out = PngReader().read(tmp_path / "a.png")
    np.testing.assert_allclose(out, [[0, 1], [0.2, 1 / 65535]], rtol=1e-6)


def test_png_one_bit_is_zero_one(tmp_path: Path):
    image = Image.new("1", (3, 2), 0)
    image.putpixel((2, 1), 1)
    image.save(tmp_path / "a.png")
    np.testing.assert_array_equal(PngReader().read(tmp_path / "a.png"), [[0, 0, 0], [0, 0, 1]])


def test_rgba_and_la_drop_alpha(tmp_path: Path):
    Image.new("RGBA", (2, 1), (255, 0, 51, 7)).save(tmp_path / "rgba.png")
    Image.new("LA", (2, 1), (102, 9)).save(tmp_path / "la.png")
    rgba = PngReader().read(tmp_path / "rgba.png")
    assert rgba.shape == (1, 2, 3)
    np.testing.assert_allclose(rgba[0, 0], [1, 0, 0.2], atol=1e-7)
    np.testing.assert_allclose(PngReader().read(tmp_path / "la.png"), [[0.4, 0.4]], atol=1e-7)


def test_palette_png_becomes_rgb(tmp_path: Path):
    image = Image.new("P", (2, 1), 0)
    image.putpalette([0, 0, 0, 255, 51, 0] + [0] * 762)
    image.putpixel((1, 0), 1)
    image.save(tmp_path / "p.png")
    out = PngReader().read(tmp_path / "p.png")
    np.testing.assert_allclose(out, [[[0, 0, 0], [1, 0.2, 0]]], atol=1e-7)


def test_jpeg_grey_constant(tmp_path: Path):
    Image.new("L", (8, 8), 102).save(tmp_path / "a.jpg", quality=100)
    out = JpegReader().read(tmp_path / "a.jpg")
    assert out.shape == (8, 8)
    np.testing.assert_allclose(out, 0.4, atol=1.5 / 255)


def test_tiff_uint16_and_float_first_page(tmp_path: Path):
    tifffile.imwrite(tmp_path / "a.tif", np.array([[0, 65535]], dtype=np.uint16))
    tifffile.imwrite(tmp_path / "f.tiff", np.array([[0.25, 0.5]], dtype=np.float32))
    tifffile.imwrite(tmp_path / "pages.tif", np.stack([np.full((2, 2), 65535, np.uint16), np.zeros((2, 2), np.uint16)]))
    np.testing.assert_array_equal(TiffReader().read(tmp_path / "a.tif"), [[0, 1]])
    np.testing.assert_array_equal(TiffReader().read(tmp_path / "f.tiff"), [[0.25, 0.5]])
    np.testing.assert_array_equal(TiffReader().read(tmp_path / "pages.tif"), np.ones((2, 2)))


def test_npy_float_taken_as_is_and_channels_kept(tmp_path: Path):
    array = np.random.default_rng(0).random((3, 4, 5)).astype(np.float64)
    np.save(tmp_path / "a.npy", array)
    out = NpyReader().read(tmp_path / "a.npy")
    assert out.dtype == np.float32 and out.shape == (3, 4, 5)
    np.testing.assert_allclose(out, array, rtol=1e-6)


def test_npy_bool_and_uint8(tmp_path: Path):
    np.save(tmp_path / "b.npy", np.array([[True, False]]))
    np.save(tmp_path / "u.npy", np.array([[255, 51]], dtype=np.uint8))
    np.testing.assert_array_equal(NpyReader().read(tmp_path / "b.npy"), [[1, 0]])
    np.testing.assert_allclose(NpyReader().read(tmp_path / "u.npy"), [[1, 0.2]], atol=1e-7)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.array([[0.0, 1.5]]), "must already be in \\[0, 1\\]"),
        (np.array([[-0.1, 0.5]]), "must already be in \\[0, 1\\]"),
        (np.array([[np.nan, 0.5]]), "NaN"),
        (np.array([[1, 2]], dtype=np.int16), "int16 has no known scale"),
        (np.zeros((2, 2, 2, 2)), "not \\(H, W\\) or \\(H, W, C\\)"),
    ],
)
def test_npy_bad_values_raise(tmp_path: Path, array: np.ndarray, message: str):
    np.save(tmp_path / "a.npy", array)
    with pytest.raises(AuditError, match=message) as info:
        NpyReader().read(tmp_path / "a.npy")
    assert "a.npy" in str(info.value)


def test_npy_never_unpickles(tmp_path: Path):
    np.save(tmp_path / "a.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(AuditError, match="pixel type object is not a number"):  # refused from the header
        NpyReader().read(tmp_path / "a.npy")
