"""A dataset on disk, streamed as ``Batch`` es at the model's input size.

Images are read lazily, one batch at a time (memory does not grow with the dataset), resized
bilinearly with anti-aliasing to ``size`` (``resize.resize_image``, the resize torchvision
applies). Unreadable images are skipped and listed in ``skipped`` (``strict=True`` raises
instead). An image whose channel count differs from the model's raises ``AuditError``.

Masks (artefact and region folders) mirror the image tree: ``root/cls/a.jpg`` takes
``masks/cls/a.<any supported extension>``. Any non-zero pixel is in the mask. Masks are resized
with nearest neighbour to ``size``, then dilated by ``mask_dilate`` pixels and blur-grown with
``mask_blur`` (σ, see ``masks.blur_mask``), both for artefact and region masks. Regions may
instead come from a CSV of bounding boxes (``audit.data.boxes``): an image's boxes are drawn at
its size on disk and the mask then takes the same steps as a mask file. A mask whose
size differs from its image is resized and counted in ``mask_report``; an unreadable mask is
listed there and its image is treated as having no mask. ``skipped`` and ``mask_report``
describe the last pass of ``batches``.

A pass reads ``Chunk`` s: ``read_chunk`` loads a list of entries and returns their readable
images stacked with what they add to the pass's bookkeeping, touching no state of the dataset,
so a worker process can build one from its own copy; ``fold`` adds a chunk's bookkeeping to the
dataset's and ``fold_chunks`` yields each chunk's readable images as one batch. Both
``batches`` and the worker processes of ``audit.data.loading`` go through them, so a pass gives
the same batches and bookkeeping either way.

Every array a reader returns (built-in or plugin) must be (H, W) or (H, W, C) within the pixel
limit (``readers.check_size``), or the image is skipped (the mask listed as unreadable). Paths
and class names leave this stage escaped (``names.escape_path``); files are opened by their
original path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from audit.data.batch import Batch
from audit.data.boxes import RegionBoxes, draw_boxes, read_boxes
from audit.data.entries import Entry, read_manifest, scan_folder
from audit.data.masks import binarise, blur_mask, check_growth, dilate_mask, resize_mask
from audit.data.names import escape_message, escape_path
from audit.data.readers import Reader, check_size, readers_by_extension
from audit.data.resize import resize_image
from audit.errors import AuditError, first_line


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class MaskReport:
    """Per pass: images whose artefact / region mask was read, masks resized, masks unreadable,
    region boxes clipped at the image border and, of those, boxes wholly outside it."""

    with_artefact: int = 0
    with_region: int = 0
    resized: int = 0
    unreadable: list[Skipped] = field(default_factory=list)
    boxes_clipped: int = 0
    boxes_outside: int = 0


    def add(self, other: MaskReport) -> None:
        self.with_artefact += other.with_artefact
        self.with_region += other.with_region
        self.resized += other.resized
        self.unreadable.extend(other.unreadable)
        self.boxes_clipped += other.boxes_clipped
        self.boxes_outside += other.boxes_outside


@dataclass
class Chunk:
    """Consecutive entries of a pass read in one go: their readable images (None when every one
    was skipped) and what reading them added to the pass's ``skipped`` and ``mask_report``."""

    batch: Batch | None
    skipped: list[Skipped]
    mask_report: MaskReport


@dataclass
class _Item:
    path: str
    label: int
    image: np.ndarray
    artefact: np.ndarray | None
    region: np.ndarray | None


def _extension_list(table: dict[str, Reader]) -> str:
    return ", ".join(sorted(table))


@dataclass
class Dataset:
    base: Path
    classes: list[str]
    entries: list[Entry]
    size: tuple[int, int]
    channels: int
    masks: Path | None = None
    regions: Path | None = None  # a folder, or the CSV of ``region_boxes``
    region_boxes: RegionBoxes | None = None
    mask_blur: float = 0.0
    mask_dilate: int = 0
    strict: bool = False
    skipped: list[Skipped] = field(default_factory=list)
    mask_report: MaskReport = field(default_factory=MaskReport)
    _readers: dict[str, Reader] = field(default_factory=readers_by_extension, repr=False)
    _listings: dict[Path, frozenset[str]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        """Number of listed images (some may turn out unreadable and be skipped)."""
        return len(self.entries)

    @property
    def root(self) -> str:
        """The dataset's folder as it is written to outputs (escaped, ``names.escape_path``)."""
        return escape_path(self.base)

    def _read(self, path: Path) -> np.ndarray:
        reader = self._readers.get(path.suffix.lower())
        if reader is None:
            supported = _extension_list(self._readers)
            raise AuditError(f"no reader for {path.suffix!r} files (supported: {supported})")
        if not path.is_file():
            raise AuditError("file not found")
        array = reader.read(path)
        if not isinstance(array, np.ndarray) or array.ndim not in (2, 3):
            shape = getattr(array, "shape", None)
            raise AuditError(
                f"{escape_path(path)}: the reader returned a {type(array).__name__} of shape {shape}, not an "
                f"(H, W) or (H, W, C) array"
            )
        check_size(escape_path(path), *array.shape)
        return array

    def _image(self, rel: str, skipped: list[Skipped]) -> tuple[np.ndarray, tuple[int, int]] | None:
        """The image at the model size and its size on disk, or None when it is skipped (and
        listed in ``skipped``)."""
        try:
            image = self._read(self.base / rel)
        except Exception as exc:  # any reader, built-in or plugin, may fail on a bad file
            reason = escape_message(first_line(exc))
            if self.strict:
                raise AuditError(
                    f"{escape_path(self.base / rel)}: unreadable ({reason}); fix or remove it, or run "
                    f"without strict mode to skip it"
                ) from exc
            skipped.append(Skipped(escape_path(rel), reason))
            return None
        found = 1 if image.ndim == 2 else image.shape[2]
        if found != self.channels:
            raise AuditError(
                f"{escape_path(self.base / rel)}: image has {found} channel(s) but the model takes "
                f"{self.channels}; convert the images to {self.channels} channel(s) "
                f"(e.g. greyscale <-> RGB) or audit a model that takes {found}"
            )
        shape = image.shape[:2]
        image = image.reshape(*shape, found)
        if shape != self.size:
            image = resize_image(image, self.size)
            np.clip(image, 0, 1, out=image)  # in place: float rounding only, the filter's weights are convex
        return image.astype(np.float32, copy=False), shape

    def first_shape(self) -> tuple[int, int, int]:
        """(H, W, C) on disk of the first readable image, skipping unreadable ones as a pass does."""
        first = ""
        for rel, _ in self.entries:
            try:
                image = self._read(self.base / rel)
            except Exception as exc:  # skipped, as in a pass
                first = first or f"{escape_path(rel)}: {escape_message(first_line(exc))}"
                continue
            return image.shape[0], image.shape[1], 1 if image.ndim == 2 else image.shape[2]
        raise AuditError(f"{self.base}: none of the {len(self.entries)} images could be read (first: {first}); fix them")

    def _listing(self, folder: Path) -> frozenset[str]:
        """File names in a mask folder, listed once per pass (one directory read, not a stat per
        candidate extension per image). Reset with the pass, like ``skipped``."""
        if folder not in self._listings:
            try:
                self._listings[folder] = frozenset(entry.name for entry in os.scandir(folder) if entry.is_file())
            except OSError:
                self._listings[folder] = frozenset()
        return self._listings[folder]

    def _mask(self, folder: Path | None, rel: str, image_shape: tuple[int, int], report: MaskReport) -> np.ndarray | None:
        """The mask for image ``rel`` at the model size, or None when there is none (or unreadable,
        listed in ``report``)."""
        if folder is None:
            return None
        stem = (folder / rel).with_suffix("")
        listing = self._listing(stem.parent)
        found = [stem.with_name(stem.name + ext) for ext in sorted(self._readers) if stem.name + ext in listing]
        if not found:
            return None
        try:
            if len(found) > 1:
                names = ", ".join(p.name for p in found)
                raise AuditError(f"several mask files for one image ({names}); keep one")
            mask = binarise(self._read(found[0]))
        except Exception as exc:  # as for images: a bad mask must not stop the audit
            report.unreadable.append(Skipped(escape_path(found[0]), escape_message(first_line(exc))))
            return None
        return self._grown(mask, image_shape, report)

    def _boxes(self, rel: str, image_shape: tuple[int, int], report: MaskReport) -> np.ndarray | None:
        """The region mask drawn from image ``rel``'s boxes at its size on disk, then grown as a
        mask file is; None when the CSV does not name the image."""
        boxes = self.region_boxes.boxes.get(rel)
        if boxes is None:
            return None
        drawn = draw_boxes(boxes, image_shape)
        report.boxes_clipped += drawn.clipped
        report.boxes_outside += drawn.outside
        return self._grown(drawn.mask, image_shape, report)

    def _grown(self, mask: np.ndarray, image_shape: tuple[int, int], report: MaskReport) -> np.ndarray:
        """A mask at its image's size on disk → at the model size, dilated and blur-grown."""
        if mask.shape != image_shape:
            report.resized += 1
        mask = resize_mask(mask, self.size)
        return blur_mask(dilate_mask(mask, self.mask_dilate), self.mask_blur)

    def _load(self, rel: str, label: int, skipped: list[Skipped], report: MaskReport) -> _Item | None:
        loaded = self._image(rel, skipped)
        if loaded is None:
            return None
        image, shape = loaded
        artefact = self._mask(self.masks, rel, shape, report)
        if self.region_boxes is not None:
            region = self._boxes(rel, shape, report)
        else:
            region = self._mask(self.regions, rel, shape, report)
        report.with_artefact += artefact is not None
        report.with_region += region is not None
        return _Item(escape_path(rel), label, image, artefact, region)

    def read_chunk(self, entries: list[Entry]) -> Chunk:
        """Read ``entries`` (consecutive entries of a pass): their readable images stacked, and
        what they add to the pass's bookkeeping. Raises ``AuditError`` as a pass does (strict
        mode, a channel count the model does not take); changes nothing on the dataset but the
        per-pass cache of mask folder listings."""
        skipped: list[Skipped] = []
        report = MaskReport()
        items = [item for rel, label in entries if (item := self._load(rel, label, skipped, report)) is not None]
        return Chunk(self._stack(items) if items else None, skipped, report)

    def start_pass(self) -> None:
        """Forget the last pass's bookkeeping (``skipped``, ``mask_report``, mask listings)."""
        self.skipped = []
        self.mask_report = MaskReport()
        self._listings = {}

    def fold(self, chunk: Chunk) -> Batch | None:
        """Add a chunk's bookkeeping to the pass's; its batch."""
        self.skipped.extend(chunk.skipped)
        self.mask_report.add(chunk.mask_report)
        return chunk.batch

    def all_skipped(self) -> AuditError:
        """The error of a pass in which no image could be read."""
        first = self.skipped[0]
        return AuditError(
            f"{self.base}: all {len(self.entries)} images were skipped (first: {first.path}: "
            f"{first.reason}); supported extensions: {_extension_list(self._readers)}"
        )

    def _stack(self, items: list[_Item]) -> Batch:
        empty = np.zeros(self.size, dtype=bool)

        def masks(name: str) -> tuple[np.ndarray, np.ndarray]:
            found = [getattr(item, name) for item in items]
            return (
                np.stack([empty if m is None else m for m in found]),
                np.array([m is not None for m in found], dtype=bool),
            )

        artefact, has_artefact = masks("artefact")
        region, has_region = masks("region")
        return Batch(
            paths=[item.path for item in items],
            labels=np.array([item.label for item in items], dtype=np.int64),
            images=np.stack([item.image for item in items]),
            artefact=artefact,
            region=region,
            has_artefact=has_artefact,
            has_region=has_region,
        )

    def batches(self, batch_size: int) -> Iterator[Batch]:
        """Stream the readable images of each window of ``batch_size`` listed images as one
        batch (``fold_chunks``), read in this process one window at a time."""
        check_batch_size(batch_size)
        self.start_pass()
        chunks = (self.read_chunk(part) for part in entry_chunks(self.entries, batch_size))
        yield from fold_chunks(self, chunks)


def check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise AuditError(f"batch size {batch_size} must be at least 1")


def entry_chunks(entries: list[Entry], size: int) -> Iterator[list[Entry]]:
    """``entries`` in consecutive lists of ``size`` (the last may be shorter)."""
    for start in range(0, len(entries), size):
        yield entries[start : start + size]


def fold_chunks(dataset: Dataset, chunks: Iterable[Chunk]) -> Iterator[Batch]:
    """Fold each chunk's bookkeeping into ``dataset`` as it arrives and yield its readable
    images as one batch, in order: a batch is a window of ``--batch-size`` listed images, shorter
    by the images skipped in it (our choice, rather than joining windows into full batches: the
    batches, and so the maps to the last bit, then depend only on the listing, and a shard cut
    at batch boundaries computes exactly the whole run's batches). Raises the all-skipped error
    when the pass yields nothing."""
    yielded = False
    for chunk in chunks:
        batch = dataset.fold(chunk)
        if batch is not None and len(batch):
            yield batch
            yielded = True
    if not yielded:
        raise dataset.all_skipped()


def _existing_folder(path: Path | None, what: str, alternative: str = "") -> Path | None:
    if path is not None and not path.is_dir():
        raise AuditError(f"{path}: {what} folder not found; give the folder that mirrors the image tree{alternative}")
    return path


def open_dataset(
    root: Path,
    *,
    size: tuple[int, int],
    channels: int,
    masks: Path | None = None,
    regions: Path | None = None,
    mask_blur: float = 0.0,
    mask_dilate: int = 0,
    strict: bool = False,
) -> Dataset:
    """Index an image folder (one sub-folder per class) or a CSV manifest; nothing is read yet.

    ``size`` is the model's (height, width), ``channels`` its channel count. Masks and regions
    are folders mirroring the image tree (see the module docstring); ``regions`` may instead be
    a CSV of bounding boxes (a file ending in .csv, ``audit.data.boxes``).
    """
    size = (int(size[0]), int(size[1]))
    if min(size) < 1 or channels < 1:
        raise AuditError(f"model input {channels}x{size[0]}x{size[1]} must be positive in every dimension")
    check_growth(mask_dilate, mask_blur, max(size))
    extensions = readers_by_extension()
    if root.is_dir():
        base = root
        classes, entries = scan_folder(root, set(extensions))
    elif root.is_file() and root.suffix.lower() == ".csv":
        base = root.parent
        classes, entries = read_manifest(root)
    else:
        raise AuditError(f"{root}: not an image folder or a .csv manifest; give one of these")
    if not entries:
        raise AuditError(
            f"{root}: no images found; supported extensions: {_extension_list(extensions)} "
            f"(one sub-folder per class, or a CSV manifest with a path column)"
        )
    boxes = None
    if regions is not None and regions.suffix.lower() == ".csv" and not regions.is_dir():
        if not regions.is_file():
            raise AuditError(f"{regions}: region boxes CSV not found; give the CSV (path,x,y,width,height) or a folder "
                             f"of region masks")
        boxes = read_boxes(regions, entries)
    return Dataset(
        base=base,
        classes=classes,
        entries=entries,
        size=size,
        channels=channels,
        masks=_existing_folder(masks, "mask"),
        regions=regions if boxes is not None else _existing_folder(regions, "region", ", or a .csv of boxes"),
        region_boxes=boxes,
        mask_blur=mask_blur,
        mask_dilate=mask_dilate,
        strict=strict,
        _readers=extensions,
    )
