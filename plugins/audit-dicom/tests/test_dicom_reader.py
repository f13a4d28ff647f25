"""The DICOM reader on real files written with pydicom, by hand-computed expectations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from audit.data.dataset import open_dataset
from audit.data.readers import readers, readers_by_extension
from audit.errors import AuditError
from audit_dicom import DicomReader


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    bits_stored: int = 16,
    photometric: str = "MONOCHROME2",
    slope: float | None = None,
    intercept: float | None = None,
) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if pixels.dtype == np.int16 else 0
    if slope is not None:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_written_files_are_explicit_vr_little_endian(tmp_path: Path):
    path = write_dicom(tmp_path / "a.dcm", np.zeros((2, 2), np.uint16))
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian and ds.BitsAllocated == 16


def test_unsigned_16_bit_scaled_by_bit_depth(tmp_path: Path):
    pixels = np.array([[0, 1000], [65535, 32768]], dtype=np.uint16)
    out = DicomReader().read(write_dicom(tmp_path / "a.dcm", pixels))
    assert out.dtype == np.float32 and out.shape == (2, 2)
    np.testing.assert_allclose(out, [[0, 1000 / 65535], [1, 32768 / 65535]], rtol=1e-6)


def test_12_bit_stored_uses_stored_range(tmp_path: Path):
    pixels = np.array([[0, 4095], [2048, 100]], dtype=np.uint16)
    out = DicomReader().read(write_dicom(tmp_path / "a.dcm", pixels, bits_stored=12))
    np.testing.assert_allclose(out, [[0, 1], [2048 / 4095, 100 / 4095]], rtol=1e-6)


def test_signed_with_rescale_slope_and_intercept(tmp_path: Path):
    pixels = np.array([[-32768, 0], [32767, 100]], dtype=np.int16)
    path = write_dicom(tmp_path / "ct.dcm", pixels, slope=0.5, intercept=-1024)
    # value = 0.5 p - 1024 over the stored range [-32768, 32767] mapped the same way:
    lo, hi = 0.5 * -32768 - 1024, 0.5 * 32767 - 1024
    expected = (0.5 * pixels.astype(np.float64) - 1024 - lo) / (hi - lo)
    np.testing.assert_allclose(DicomReader().read(path), expected, rtol=1e-6)
    np.testing.assert_allclose(expected, (pixels.astype(np.float64) + 32768) / 65535, rtol=1e-12)


def test_negative_slope_keeps_order_of_the_range(tmp_path: Path):
    pixels = np.array([[0, 255]], dtype=np.uint16)
    out = DicomReader().read(write_dicom(tmp_path / "a.dcm", pixels, bits_stored=8, slope=-1.0, intercept=0.0))
    np.testing.assert_allclose(out, [[1, 0]])


def test_monochrome1_is_inverted(tmp_path: Path):
    pixels = np.array([[0, 4095], [1000, 3000]], dtype=np.uint16)
    out = DicomReader().read(write_dicom(tmp_path / "m1.dcm", pixels, bits_stored=12, photometric="MONOCHROME1"))
    np.testing.assert_allclose(out, 1 - pixels / 4095, rtol=1e-6, atol=1e-7)


def test_found_through_the_entry_point():
    assert "dicom" in readers.names()
    assert readers.origin("dicom") == "audit-dicom"
    assert readers.get("dicom") is DicomReader
    assert isinstance(readers_by_extension()[".dcm"], DicomReader)


def test_open_dataset_reads_dicom_images_and_masks(tmp_path: Path):
    image = np.array([[0, 65535], [65535, 0]], dtype=np.uint16)
    (tmp_path / "img" / "sick").mkdir(parents=True)
    (tmp_path / "masks" / "sick").mkdir(parents=True)
    write_dicom(tmp_path / "img" / "sick" / "a.dcm", image)
    write_dicom(tmp_path / "masks" / "sick" / "a.dcm", np.array([[0, 0], [0, 1]], dtype=np.uint16))
    ds = open_dataset(tmp_path / "img", size=(2, 2), channels=1, masks=tmp_path / "masks")
    (batch,) = list(ds.batches(4))
    assert batch.paths == ["sick/a.dcm"] and ds.classes == ["sick"]
    np.testing.assert_array_equal(batch.images[0, :, :, 0], [[0, 1], [1, 0]])
    np.testing.assert_array_equal(batch.artefact[0], [[False, False], [False, True]])


def test_corrupt_dicom_is_skipped_with_a_reason(tmp_path: Path):
    (tmp_path / "img" / "x").mkdir(parents=True)
    (tmp_path / "img" / "x" / "bad.dcm").write_bytes(b"\0" * 10)
    write_dicom(tmp_path / "img" / "x" / "good.dcm", np.zeros((2, 2), np.uint16))
    ds = open_dataset(tmp_path / "img", size=(2, 2), channels=1)
    (batch,) = list(ds.batches(4))
    assert batch.paths == ["x/good.dcm"]
    assert [s.path for s in ds.skipped] == ["x/bad.dcm"]


def test_multi_frame_is_refused(tmp_path: Path):
    path = write_dicom(tmp_path / "a.dcm", np.zeros((4, 2), np.uint16))
    ds = pydicom.dcmread(path)
    ds.Rows, ds.NumberOfFrames = 2, 2
    ds.save_as(path)
    with pytest.raises(AuditError, match="multi-frame DICOM; export one frame per file"):
        DicomReader().read(path)


@pytest.mark.parametrize("rows, columns, match", [(20000, 20000, "400,000,000 pixels is above the limit of 89,478,485"), (0, 4, "has no pixels")])
def test_rows_and_columns_are_checked_before_the_pixel_data_is_decoded(tmp_path: Path, rows, columns, match):
    """The header's Rows × Columns against audit's pixel limit: refused with audit's message,
    not pydicom's, and without allocating the claimed 800 MB (tracemalloc sees numpy's buffers)."""
    import tracemalloc

    path = write_dicom(tmp_path / "a.dcm", np.zeros((2, 2), np.uint16))
    ds = pydicom.dcmread(path)
    ds.Rows, ds.Columns = rows, columns
    ds.save_as(path)
    tracemalloc.start()
    try:
        with pytest.raises(AuditError, match=match):
            DicomReader().read(path)
        assert tracemalloc.get_traced_memory()[1] < 5_000_000
    finally:
        tracemalloc.stop()
