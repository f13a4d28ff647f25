"""A DICOM reader for audit (entry point ``audit.readers``: ``dicom``).

Grey images: modality rescale (``RescaleSlope``, ``RescaleIntercept``) applied, then scaled to
[0, 1] by the *bit depth*: the stored range from ``BitsStored`` and ``PixelRepresentation``
(0 … 2^b − 1, or −2^(b−1) … 2^(b−1) − 1 for signed data) is rescaled the same way and mapped to
[0, 1]. This keeps one fixed mapping for all files with the same header (per-image min/max
would change the contrast image by image). ``MONOCHROME1`` is inverted so that white is 1.
RGB images are divided by 2^b − 1. Multi-frame files are refused, and so is an image above
audit's pixel limit (``Rows`` × ``Columns`` from the header, checked before the pixel data is
decoded).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pydicom

from audit.data.readers import check_size
from audit.errors import AuditError


def _stored_range(ds: pydicom.Dataset) -> tuple[float, float]:
    bits = int(ds.BitsStored)
    if int(ds.PixelRepresentation) == 1:
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1


class DicomReader:
    extensions: ClassVar[tuple[str, ...]] = (".dcm", ".dicom")

    def read(self, path: Path) -> np.ndarray:
        ds = pydicom.dcmread(path)
        if "PixelData" not in ds:
            raise AuditError(f"{path}: DICOM file has no pixel data")
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise AuditError(f"{path}: multi-frame DICOM; export one frame per file")
        samples = int(ds.get("SamplesPerPixel", 1))
        if samples not in (1, 3):
            raise AuditError(f"{path}: {samples} samples per pixel; only grey (1) and RGB (3) are read")
        check_size(path, ds.Rows, ds.Columns, samples)
        pixels = ds.pixel_array.astype(np.float64)
        lo, hi = _stored_range(ds)
        if samples == 3:
            return np.clip(pixels / hi, 0, 1).astype(np.float32)
        slope = float(ds.get("RescaleSlope", 1.0))
        intercept = float(ds.get("RescaleIntercept", 0.0))
        lo, hi = sorted((lo * slope + intercept, hi * slope + intercept))
        out = np.clip((pixels * slope + intercept - lo) / (hi - lo), 0, 1)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            out = 1.0 - out
        return out.astype(np.float32)
