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
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np
import tifffile
from PIL import Image

from audit.errors import AuditError
from audit.registry import Registry


class Reader(Protocol):
    extensions: ClassVar[tuple[str, ...]]

    def read(self, path: Path) -> np.ndarray: ...


readers: Registry[type[Reader] | Reader] = Registry("image reader", "audit.readers")


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
        with Image.open(path) as image:
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
        return to_unit_range(drop_alpha(tifffile.imread(path, key=0)), path)


@readers.register("npy")
class NpyReader:
    extensions: ClassVar[tuple[str, ...]] = (".npy",)

    def read(self, path: Path) -> np.ndarray:
        array = np.load(path, allow_pickle=False)
        if array.ndim not in (2, 3):
            raise AuditError(
                f"{path}: array shape {array.shape} is not (H, W) or (H, W, C); save one image "
                f"per file, channels last"
            )
        return to_unit_range(array, path)


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
