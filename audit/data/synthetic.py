"""The crosses-and-distractor dataset of Viviano et al. (2019), "Underwhelming generalization
improvements from controlling feature attribution", section 4 and Figure 1.

28×28 binary images. Class 0 has one cross, class 1 two crosses; each cross has arms of 1 or 2
pixels, a random position, and keeps one pixel clear of the other cross and of both possible
box positions. A 2×3 distractor box sits in the lower-left corner for class 0 and in the
lower-right corner for class 1 in train (``box="biased"``); valid and test images are flipped
horizontally, which reverses the box logic, so a model that reads the box scores AUC ≈ 0 there.
``box="random"`` puts the box lower-left or lower-right with probability ½ each, independent of
the class (the data of an unbiased twin). Region masks cover exactly the crosses, the artefact
mask exactly the box. Classes alternate (0, 1, 0, …), so splits are balanced. Everything is
determined by ``seed``; each split has its own random stream, so its content does not depend on
the sizes of the other splits. Each split holds 2 to ``MAX_SPLIT`` (1,000,000) images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from audit.errors import AuditError, first_line

SIZE = 28
SPLITS = ("train", "valid", "test")
CLASS_DIRS = ("0-one-cross", "1-two-crosses")
BOX_ROWS = slice(21, 23)
BOX_COLS = {"left": slice(5, 8), "right": slice(20, 23)}  # mirror images of each other
BOXES = ("biased", "random")
MAX_SPLIT = 1_000_000


@dataclass
class SyntheticSplit:
    """images: (N, 28, 28) float32 in {0, 1}; labels: (N,) int64; artefact / region: bool."""

    images: np.ndarray
    labels: np.ndarray
    artefact: np.ndarray
    region: np.ndarray


def _box_mask(side: str) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[BOX_ROWS, BOX_COLS[side]] = True
    return mask


def _crosses(count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` crosses, each one pixel clear of the others and of both box positions."""
    region = np.zeros((SIZE, SIZE), dtype=bool)
    taken = _box_mask("left") | _box_mask("right")
    for _ in range(count):
        while True:
            arm = int(rng.integers(1, 3))
            r, c = (int(v) for v in rng.integers(arm, SIZE - arm, size=2))
            if not taken[max(r - arm - 1, 0) : r + arm + 2, max(c - arm - 1, 0) : c + arm + 2].any():
                break
        region[r - arm : r + arm + 1, c] = True
        region[r, c - arm : c + arm + 1] = True
        taken[r - arm : r + arm + 1, c - arm : c + arm + 1] = True
    return region


def generate_split(split: str, n: int, *, seed: int = 0, box: str = "biased") -> SyntheticSplit:
    """One split of ``n`` images (``split`` in train / valid / test; valid and test are flipped)."""
    if split not in SPLITS or box not in BOXES:
        raise AuditError(f"split {split!r} / box {box!r}: use one of {SPLITS} / {BOXES}")
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    labels = np.arange(n, dtype=np.int64) % 2
    region = np.zeros((n, SIZE, SIZE), dtype=bool)
    artefact = np.zeros((n, SIZE, SIZE), dtype=bool)
    for i, y in enumerate(labels):
        region[i] = _crosses(int(y) + 1, rng)
        left = y == 0 if box == "biased" else rng.random() < 0.5
        artefact[i] = _box_mask("left" if left else "right")
    if split != "train":
        region, artefact = region[:, :, ::-1].copy(), artefact[:, :, ::-1].copy()
    images = (region | artefact).astype(np.float32)
    return SyntheticSplit(images=images, labels=labels, artefact=artefact, region=region)


def generate(
    *, seed: int = 0, n_train: int = 500, n_valid: int = 128, n_test: int = 128, box: str = "biased"
) -> dict[str, SyntheticSplit]:
    """All three splits as arrays, keyed by split name."""
    sizes = dict(zip(SPLITS, (n_train, n_valid, n_test)))
    return {split: generate_split(split, n, seed=seed, box=box) for split, n in sizes.items()}


def make_synthetic(
    out: Path,
    *,
    seed: int = 0,
    n_train: int = 500,
    n_valid: int = 128,
    n_test: int = 128,
    box: str = "biased",
) -> Path:
    """Write the dataset as 0/255 PNGs and return ``out``::

        OUT/{train,valid,test}/images/{0-one-cross,1-two-crosses}/NNNN.png
        OUT/{split}/artefacts/<same relative path>   (the box)
        OUT/{split}/regions/<same relative path>     (the crosses)

    ``out`` must not exist or be empty, so no earlier file is overwritten or left stale.
    """
    for flag, n in (("--n-train", n_train), ("--n-valid", n_valid), ("--n-test", n_test)):
        if not 2 <= n <= MAX_SPLIT:
            raise AuditError(f"{flag} {n}: must be from 2 to {MAX_SPLIT:,} images")
    try:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise AuditError(f"{out}: already exists and is not an empty folder; choose a new folder")
        data = generate(seed=seed, n_train=n_train, n_valid=n_valid, n_test=n_test, box=box)
        for split, part in data.items():
            for i, label in enumerate(part.labels):
                rel = Path(CLASS_DIRS[label]) / f"{i:04d}.png"
                for kind, array in (("images", part.images[i]), ("artefacts", part.artefact[i]), ("regions", part.region[i])):
                    path = out / split / kind / rel
                    path.parent.mkdir(parents=True, exist_ok=True)
                    iio.imwrite(path, (array > 0).astype(np.uint8) * 255)
    except OSError as exc:  # below a file, a name too long, a read-only or full file system
        raise AuditError(f"{out}: cannot write the dataset ({exc.strerror or first_line(exc)}); choose a writable folder") from exc
    return out
