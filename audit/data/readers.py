"""Image file readers and their registry (entry-point group ``audit.readers``).

A reader is a class (constructed without arguments) or an object with ``extensions`` (lower-case,
with the dot) and ``read(path) -> np.ndarray``: float32, (H, W) or (H, W, C), values in [0, 1].
``to_unit_range`` does the conversion every reader needs: uint8 / 255, uint16 / 65535 (any
unsigned integer by its maximum), bool → 0/1, floats as they are. Float data must already be in
[0, 1]; values outside it (or NaN) raise ``AuditError`` rather than being clipped, because a
silent clip hides a wrong scaling. Signed integers raise too: their scale is not known.

Built-ins: PNG and JPEG (Pillow, read directly: imageio re-runs its plugin imports on every
call, a third of the loading time; palette and CMYK images come back as RGB, the alpha of
LA / RGBA is dropped, 16-bit PNG stays 16-bit), TIFF (tifffile, first page), NPY (``np.load`` without pickle;
the array is taken as it is, any channel count). A plugin claims other extensions::

    [project.entry-points."audit.readers"]
    dicom = "audit_dicom:DicomReader"

Built-in readers win when a plugin claims the same extension.

Size limit (``check_size``): every built-in reader reads the image's height, width and samples
per pixel from the file's header (Pillow's size, the TIFF page's tags, the NPY header) and
refuses, before decoding anything, an image with no pixels, more than
``audit.limits.MAX_IMAGE_PIXELS`` pixels (H × W), or more than 4 × that many samples
(H × W × channels, depth included: a 4-channel image at the pixel limit), so a small compressed
or lying file cannot make the tool allocate gigabytes. An NPY file must also hold the bytes its
header promises. A plugin reader should call ``check_size`` on its header the same way (the
DICOM plugin does); ``Dataset`` checks every array a reader returns again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np
import tifffile
from PIL import Image

from audit.errors import AuditError
from audit.limits import MAX_IMAGE_PIXELS, too_many_pixels
from audit.registry import Registry


class Reader(Protocol):
    extensions: ClassVar[tuple[str, ...]]

    def read(self, path: Path) -> np.ndarray: ...


def reader_problem(entry: object) -> str | None:
    """Why a plugin's entry point is not a reader (None when it is): a class constructed without
    arguments, or an object, with ``extensions`` (a tuple of '.ext' strings) and a callable ``read``."""
    reader = entry() if isinstance(entry, type) else entry
    extensions = getattr(reader, "extensions", None)
    if not isinstance(extensions, (tuple, list)) or not all(isinstance(e, str) and e.startswith(".") for e in extensions):
        return f"{type(reader).__name__} is not a reader: it needs extensions, a tuple of strings like '.png'"
    if not callable(getattr(reader, "read", None)):
        return f"{type(reader).__name__} is not a reader: it has no read(path) method"
    return None


readers: Registry[type[Reader] | Reader] = Registry("image reader", "audit.readers", reader_problem)


def check_size(path: Path | str, height: int, width: int, samples: int = 1) -> None:
    """Refuse an image with no pixels, more than ``MAX_IMAGE_PIXELS`` pixels, or more than
    4 × ``MAX_IMAGE_PIXELS`` samples (H × W × channels), from its header, before decoding."""
    height, width, samples = int(height), int(width), int(samples)
    if min(height, width, samples) < 1:
        raise AuditError(f"{path}: image of {height}x{width} pixels x {samples} channel(s) has no pixels; remove it")
    if too_many_pixels(height, width):
        raise AuditError(
            f"{path}: {height}x{width} = {height * width:,} pixels is above the limit of "
            f"{MAX_IMAGE_PIXELS:,} (audit.limits); downscale it"
        )
    if height * width * samples > 4 * MAX_IMAGE_PIXELS:
        raise AuditError(
            f"{path}: {height}x{width} pixels x {samples} channels = {height * width * samples:,} values "
            f"is above the limit of {4 * MAX_IMAGE_PIXELS:,} (4 channels at the pixel limit); keep fewer channels"
        )


def to_unit_range(array: np.ndarray, path: Path) -> np.ndarray:
    """Scale an image array to float32 in [0, 1] by its dtype (see the module docstring)."""
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.unsignedinteger):
        return np.divide(array, np.float32(np.iinfo(array.dtype).max), dtype=np.float32)
    if np.issubdtype(array.dtype, np.floating):
        out = array.astype(np.float32)
        if out.size and not (np.all(out >= 0.0) and np.all(out <= 1.0)):
            raise AuditError(
                f"{path}: float values span [{np.nanmin(out):g}, {np.nanmax(out):g}] (or are NaN); "
                f"float images must already be in [0, 1]: rescale them or save them as uint8/uint16"
            )
        return out
    raise AuditError(
        f"{path}: pixel type {array.dtype} has no known scale; save it as uint8, uint16, bool "
        f"or float in [0, 1]"
    )


def drop_alpha(array: np.ndarray) -> np.ndarray:
    """(H, W, 2) grey+alpha → (H, W); (H, W, 4) RGBA → (H, W, 3); anything else unchanged."""
    if array.ndim == 3 and array.shape[2] == 2:
        return array[:, :, 0]
    if array.ndim == 3 and array.shape[2] == 4:
        return array[:, :, :3]
    return array


#: Pillow modes whose pixels numpy takes as they are; any other mode is converted to RGB.
_DIRECT_MODES = {"1", "L", "LA", "RGB", "RGBA", "I;16", "I;16B", "I;16L"}


class _PillowReader:
    """PNG / JPEG through Pillow (first frame)."""

    extensions: ClassVar[tuple[str, ...]] = ()

    def read(self, path: Path) -> np.ndarray:
        try:
            opened = Image.open(path)
        except Image.DecompressionBombError:
            raise AuditError(
                f"{path}: more than twice the limit of {MAX_IMAGE_PIXELS:,} pixels (Pillow's "
                f"decompression-bomb check); downscale it"
            ) from None
        with opened as image:
            check_size(path, image.height, image.width)
            if image.mode not in _DIRECT_MODES:
                image = image.convert("RGBA" if image.mode == "P" and "transparency" in image.info else "RGB")
            array = np.asarray(image)
        return to_unit_range(drop_alpha(array), path)


@readers.register("png")
class PngReader(_PillowReader):
    extensions: ClassVar[tuple[str, ...]] = (".png",)


@readers.register("jpeg")
class JpegReader(_PillowReader):
    extensions: ClassVar[tuple[str, ...]] = (".jpg", ".jpeg")


@readers.register("tiff")
class TiffReader:
    extensions: ClassVar[tuple[str, ...]] = (".tif", ".tiff")

    def read(self, path: Path) -> np.ndarray:
        with tifffile.TiffFile(path) as tiff:
            if not tiff.pages:
                raise AuditError(f"{path}: TIFF file has no image")
            page = tiff.pages[0]
            samples = page.imagedepth * page.samplesperpixel
            check_size(path, page.imagelength, page.imagewidth, samples)
            if page.is_tiled:  # each tile is decoded into a buffer of its own size
                check_size(path, page.tilelength, page.tilewidth, page.tiledepth * page.samplesperpixel)
            array = tiff.asarray(key=0)
        return to_unit_range(drop_alpha(array), path)


@readers.register("npy")
class NpyReader:
    extensions: ClassVar[tuple[str, ...]] = (".npy",)

    def read(self, path: Path) -> np.ndarray:
        with open(path, "rb") as f:
            shape, dtype = _npy_header(f, path)
            if len(shape) not in (2, 3):
                raise AuditError(
                    f"{path}: array shape {shape} is not (H, W) or (H, W, C); save one image "
                    f"per file, channels last"
                )
            check_size(path, shape[0], shape[1], shape[2] if len(shape) == 3 else 1)
            needed = int(np.prod(shape)) * dtype.itemsize
            if os.fstat(f.fileno()).st_size - f.tell() < needed:
                raise AuditError(f"{path}: NPY file is shorter than its header's {shape} {dtype} array; it is truncated")
            f.seek(0)
            array = np.load(f, allow_pickle=False)
        return to_unit_range(array, path)


def _npy_header(f, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """The array's shape and dtype from an NPY header (numpy's own parser; version 3 differs
    from 2 only in the header's text encoding)."""
    version = np.lib.format.read_magic(f)
    parse = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = parse(f)
    if dtype.kind not in "biuf" or dtype.subdtype is not None:
        raise AuditError(f"{path}: pixel type {dtype} is not a number; save it as uint8, uint16, bool or float in [0, 1]")
    return tuple(int(n) for n in shape), dtype


def readers_by_extension() -> dict[str, Reader]:
    """Extension → reader instance over every registered reader (built-ins first)."""
    table: dict[str, Reader] = {}
    names = sorted(readers.names(), key=lambda name: readers.origin(name) != "builtin")
    for name in names:
        entry = readers.get(name)
        reader = entry() if isinstance(entry, type) else entry
        for ext in reader.extensions:
            table.setdefault(ext.lower(), reader)
    return table
