"""The synthetic crosses-and-box dataset (Viviano et al. 2019, Figure 1)."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from scipy import ndimage

from audit.data import synthetic
from audit.data.dataset import open_dataset
from audit.data.synthetic import CLASS_DIRS, generate, generate_split, make_synthetic
from audit.errors import AuditError

LEFT = np.zeros((28, 28), dtype=bool)
LEFT[21:23, 5:8] = True
RIGHT = LEFT[:, ::-1]


def crosses(region: np.ndarray) -> list[tuple[int, int, int]]:
    """(row, col, arm) of each connected plus shape; fails on anything that is not a plus."""
    labelled, count = ndimage.label(region)
    found = []
    for i in range(1, count + 1):
        rows, cols = np.nonzero(labelled == i)
        arm = (rows.max() - rows.min()) // 2
        r, c = rows.min() + arm, cols.min() + arm
        plus = np.zeros_like(region)
        plus[r - arm : r + arm + 1, c] = True
        plus[r, c - arm : c + arm + 1] = True
        assert np.array_equal(labelled == i, plus), "component is not a cross"
        found.append((int(r), int(c), int(arm)))
    return found


@pytest.fixture(scope="module")
def data():
    return generate(seed=0)


def test_default_sizes_balanced_and_binary(data):
    assert {k: len(v.labels) for k, v in data.items()} == {"train": 500, "valid": 128, "test": 128}
    for split in data.values():
        assert split.images.shape[1:] == (28, 28) and split.images.dtype == np.float32
        assert set(np.unique(split.images)) == {0.0, 1.0}
        assert np.bincount(split.labels).tolist() == [len(split.labels) // 2] * 2


def test_masks_cover_exactly_crosses_and_box(data):
    for split in data.values():
        assert not (split.region & split.artefact).any()
        np.testing.assert_array_equal(split.images > 0, split.region | split.artefact)
        for artefact in split.artefact:
            assert np.array_equal(artefact, LEFT) or np.array_equal(artefact, RIGHT)


def test_class_is_the_number_of_crosses_with_arms_1_or_2(data):
    arms = set()
    for split in data.values():
        for region, label in zip(split.region, split.labels):
            found = crosses(region)
            assert len(found) == label + 1
            arms |= {arm for _, _, arm in found}
    assert arms == {1, 2}


def test_crosses_keep_clear_of_both_box_positions(data):
    halo = ndimage.binary_dilation(LEFT | RIGHT, np.ones((3, 3)))
    for split in data.values():
        assert not (split.region & halo).any()


def test_box_side_follows_class_in_train_and_is_reversed_in_valid_and_test(data):
    def left(split) -> np.ndarray:
        return np.array([np.array_equal(a, LEFT) for a in split.artefact])

    train = data["train"]
    np.testing.assert_array_equal(left(train), train.labels == 0)
    for name in ("valid", "test"):
        np.testing.assert_array_equal(left(data[name]), data[name].labels == 1)


def test_valid_and_test_are_exact_mirror_images_of_the_train_recipe(monkeypatch):
    real = np.random.default_rng
    # Give every split the same random stream: valid / test must then mirror train exactly.
    monkeypatch.setattr(synthetic.np.random, "default_rng", lambda seed: real(seed[0]))
    train = generate_split("train", 8, seed=3)
    for name in ("valid", "test"):
        other = generate_split(name, 8, seed=3)
        np.testing.assert_array_equal(other.images, train.images[:, :, ::-1])
        np.testing.assert_array_equal(other.region, train.region[:, :, ::-1])
        np.testing.assert_array_equal(other.artefact, train.artefact[:, :, ::-1])
        np.testing.assert_array_equal(other.labels, train.labels)


def test_deterministic_given_seed_and_independent_of_other_split_sizes():
    a = generate(seed=7, n_train=20, n_valid=4, n_test=4)
    b = generate(seed=7, n_train=20, n_valid=10, n_test=2)
    c = generate(seed=8, n_train=20, n_valid=4, n_test=4)
    np.testing.assert_array_equal(a["train"].images, b["train"].images)
    np.testing.assert_array_equal(a["valid"].images, b["valid"].images[:4])
    assert not np.array_equal(a["train"].images, c["train"].images)


def test_random_box_is_independent_of_class():
    split = generate_split("train", 400, seed=0, box="random")
    left = np.array([np.array_equal(a, LEFT) for a in split.artefact])
    for label in (0, 1):
        share = left[split.labels == label].mean()
        assert 0.35 < share < 0.65
    np.testing.assert_array_equal(split.images > 0, split.region | split.artefact)


def test_bad_split_or_box_is_an_error():
    with pytest.raises(AuditError, match="box 'sideways'"):
        generate_split("train", 2, box="sideways")


def test_make_synthetic_layout_and_contents(tmp_path: Path):
    out = make_synthetic(tmp_path / "synth", seed=1, n_train=6, n_valid=4, n_test=2)
    data = generate(seed=1, n_train=6, n_valid=4, n_test=2)
    for split, part in data.items():
        for i, label in enumerate(part.labels):
            rel = Path(CLASS_DIRS[label]) / f"{i:04d}.png"
            for kind, array in (("images", part.images[i]), ("artefacts", part.artefact[i]), ("regions", part.region[i])):
                written = iio.imread(out / split / kind / rel)
                assert written.dtype == np.uint8
                np.testing.assert_array_equal(written, (array > 0) * 255)
    assert sorted(p.name for p in (out / "valid" / "images").iterdir()) == list(CLASS_DIRS)
    ds = open_dataset(
        out / "valid" / "images", size=(28, 28), channels=1,
        masks=out / "valid" / "artefacts", regions=out / "valid" / "regions",
    )
    (batch,) = list(ds.batches(16))
    order = [int(Path(p).stem) for p in batch.paths]
    valid = data["valid"]
    np.testing.assert_array_equal(batch.labels, valid.labels[order])
    np.testing.assert_array_equal(batch.images[..., 0], valid.images[order])
    np.testing.assert_array_equal(batch.artefact, valid.artefact[order])
    np.testing.assert_array_equal(batch.region, valid.region[order])


def test_make_synthetic_refuses_a_non_empty_folder(tmp_path: Path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(AuditError, match="not an empty folder"):
        make_synthetic(tmp_path, n_train=2, n_valid=2, n_test=2)
    assert (tmp_path / "keep.txt").read_text() == "mine"
