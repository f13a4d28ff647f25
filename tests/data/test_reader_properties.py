"""Property tests: whatever bytes sit in an image or mask file (random bytes, truncations of valid
files, PNG / NPY / TIFF headers with valid magic and random sizes and types), reading a dataset
either reads the file or skips and lists it, or stops with a one-line ``AuditError``; never any
other exception, and never an allocation of the header's claimed size."""

from __future__ import annotations

import io
import os
import re
import struct
import zlib
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from audit.data.dataset import open_dataset
from audit.data.names import escape_path
from audit.errors import AuditError

EXTENSIONS = [".png", ".jpg", ".tif", ".npy"]
FAST = settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")

# sizes: mostly small, sometimes far above the pixel limit, sometimes zero
SIDES = st.one_of(st.integers(0, 48), st.integers(0, 2**31 - 1), st.sampled_from([0, 1, 9459, 9460, 65535]))


def read_through_dataset(name: str, content: bytes) -> None:
    """``content`` as an image (next to a valid one) and as the valid image's mask, read through
    ``open_dataset(...).batches``; checks the outcome is read, skipped-and-listed or AuditError."""
    with TemporaryDirectory() as tmp:
        root, masks = Path(tmp) / "data", Path(tmp) / "masks"
        (root / "c").mkdir(parents=True)
        (masks / "c").mkdir(parents=True)
        Image.fromarray(np.full((4, 4), 200, np.uint8)).save(root / "c" / "good.png")
        (root / "c" / name).write_bytes(content)
        (masks / "c" / ("good" + Path(name).suffix)).write_bytes(content)
        dataset = open_dataset(root, size=(4, 4), channels=1, masks=masks)
        try:
            batches = list(dataset.batches(2))
        except AuditError as exc:
            assert "\n" not in str(exc)
            return
        paths = [p for batch in batches for p in batch.paths]
        skipped = [s.path for s in dataset.skipped]
        assert "c/good.png" in paths
        assert (f"c/{name}" in paths) != (f"c/{name}" in skipped)  # read, or skipped and listed
        for batch in batches:
            assert batch.images.dtype == np.float32 and np.all((batch.images >= 0) & (batch.images <= 1))
        unreadable = [s.path for s in dataset.mask_report.unreadable]
        good = paths.index("c/good.png")
        mask_read = np.concatenate([batch.has_artefact for batch in batches])[good]
        assert mask_read != (len(unreadable) == 1)  # the mask was read, or listed as unreadable


@FAST
@given(extension=st.sampled_from(EXTENSIONS), content=st.binary(max_size=2048))
def test_random_bytes(extension: str, content: bytes) -> None:
    read_through_dataset("x" + extension, content)


def valid_file(extension: str, image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    if extension == ".npy":
        np.save(buffer, image)
    elif extension == ".tif":
        tifffile.imwrite(buffer, image, compression="zlib")
    else:
        Image.fromarray(image).save(buffer, format="PNG" if extension == ".png" else "JPEG")
    return buffer.getvalue()


@FAST
@given(
    extension=st.sampled_from(EXTENSIONS),
    shape=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    rgb=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
    cut=st.floats(0, 1),
)
def test_truncations_of_valid_files(extension: str, shape: tuple[int, int], rgb: bool, seed: int, cut: float) -> None:
    image = np.random.default_rng(seed).integers(0, 256, shape + ((3,) if rgb else ()), dtype=np.uint8)
    content = valid_file(extension, image)
    read_through_dataset("x" + extension, content[: int(cut * len(content))])


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@FAST
@given(
    width=SIDES, height=SIDES,
    depth=st.sampled_from([1, 2, 4, 8, 16, 3, 0, 255]),
    colour=st.sampled_from([0, 2, 3, 4, 6, 1, 7]),
    pixels=st.binary(max_size=512),
)
def test_png_headers(width: int, height: int, depth: int, colour: int, pixels: bytes) -> None:
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    content = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(pixels)) + _chunk(b"IEND", b"")
    read_through_dataset("x.png", content)


NPY_TYPES = ["|u1", "<u2", ">u2", "<f4", "<f8", "<f2", "|b1", "<i4", "<c8", "|O", "|V8", "<U3", "<M8[s]", [("a", "<f4")]]


@FAST
@given(
    shape=st.lists(st.one_of(st.integers(0, 8), st.integers(0, 2**40)), max_size=4),
    descr=st.sampled_from(NPY_TYPES),
    payload=st.binary(max_size=1024),
)
def test_npy_headers(shape: list[int], descr: str | list, payload: bytes) -> None:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": tuple(shape)})
    read_through_dataset("x.npy", buffer.getvalue() + payload)


def tiff_bytes(width: int, height: int, bits: int, samples: int, compression: int, data: bytes) -> bytes:
    """A little-endian baseline TIFF, one strip, built tag by tag (tifffile refuses to write lies)."""
    tags = [(256, 4, width), (257, 4, height), (258, 3, bits), (259, 3, compression), (262, 3, 1 if samples < 3 else 2),
            (273, 4, 0), (277, 3, samples), (278, 4, height), (279, 4, len(data))]
    ifd_size = 2 + 12 * len(tags) + 4
    data_offset = 8 + ifd_size
    ifd = struct.pack("<H", len(tags))
    for tag, kind, value in tags:
        value = data_offset if tag == 273 else value
        ifd += struct.pack("<HHI", tag, kind, 1) + (struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value))
    return b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + data


@FAST
@given(
    width=SIDES, height=SIDES,
    bits=st.sampled_from([1, 8, 16, 32, 64, 0, 12]),
    samples=st.sampled_from([1, 3, 4, 0, 200, 65535]),
    compression=st.sampled_from([1, 8, 5, 32773, 7]),
    data=st.binary(max_size=512),
)
def test_tiff_headers(width: int, height: int, bits: int, samples: int, compression: int, data: bytes) -> None:
    read_through_dataset("x.tif", tiff_bytes(width, height, bits, samples, compression, data))


def unescape(text: str) -> bytes:
    """The documented inverse of ``escape_path``, written from the README's rule."""
    out = bytearray()
    for token in re.finditer(r"\\\\|\\x([0-9a-f]{2})|[^\\]+", text):
        if token.group() == "\\\\":
            out += b"\\"
        elif token.group(1) is not None:
            out.append(int(token.group(1), 16))
        else:
            out += token.group().encode("utf-8")
    return bytes(out)


@settings(max_examples=200, deadline=None, database=None)
@given(name=st.one_of(st.binary(min_size=1, max_size=40), st.text(min_size=1, max_size=20).map(str.encode)))
def test_escaped_names_are_utf8_one_line_and_lossless(name: bytes) -> None:
    escaped = escape_path(os.fsdecode(name))
    escaped.encode("utf-8")  # writable to CSV, JSON and PDF (raises on a lone surrogate)
    assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in escaped)  # one line, no control characters
    assert unescape(escaped) == name

