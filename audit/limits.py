"""Size limits shared by every reader of untrusted input.

``MAX_IMAGE_PIXELS`` is Pillow's own decompression-bomb threshold (89,478,485 pixels, about
0.25 GiB at 8-bit RGB; Pillow warns above it and refuses at twice it). We apply it, once, to
every image and mask reader (PNG, JPEG, TIFF, NPY, DICOM and plugins) before decoding, and to a
model's declared or requested input (H × W), so that a small compressed file or a flag cannot
make the tool allocate gigabytes. Images above it are skipped and listed like any unreadable one.
"""

from __future__ import annotations

MAX_IMAGE_PIXELS = 89_478_485


def too_many_pixels(height: int, width: int) -> bool:
    """True when an H × W image is larger than the limit every reader applies."""
    return int(height) * int(width) > MAX_IMAGE_PIXELS
