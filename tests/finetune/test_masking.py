"""x_masked: the permutation keeps the scrambled pixels' values, moves nothing else, and is seeded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audit.data.batch import Batch
from audit.errors import AuditError
from audit.finetune.masking import permute_scrambled, scrambled_pixels, select_masks

torch.set_num_threads(1)


def _batch() -> Batch:
    rng = np.random.default_rng(0)
    region = np.zeros((3, 6, 6), dtype=bool)
    region[:, 1:3, 1:4] = True
    artefact = np.zeros((3, 6, 6), dtype=bool)
    artefact[:, 4:, 4:] = True
    return Batch(paths=["a", "b", "c"], labels=np.array([0, 1, 0]), images=rng.random((3, 6, 6, 2), dtype=np.float32),
                 artefact=artefact, region=region, has_artefact=np.array([True, False, True]),
                 has_region=np.array([True, True, False]))


def test_regions_mode_scrambles_outside_the_region_and_skips_images_without_one() -> None:
    scrambled, has_mask = scrambled_pixels(_batch(), "regions")
    assert has_mask.tolist() == [True, True, False]
    assert not scrambled[0, 1:3, 1:4].any() and scrambled[0].sum() == 36 - 6
    assert not scrambled[2].any()


def test_masks_mode_scrambles_the_artefact() -> None:
    scrambled, has_mask = scrambled_pixels(_batch(), "masks")
    assert has_mask.tolist() == [True, False, True]
    assert scrambled[0].sum() == 4 and scrambled[0, 4:, 4:].all() and not scrambled[1].any()


def test_selected_paths_limit_the_masks() -> None:
    _, has_mask = scrambled_pixels(_batch(), "regions", selected={"b"})
    assert has_mask.tolist() == [False, True, False]


def test_permutation_keeps_the_multiset_outside_and_the_region_untouched() -> None:
    batch = _batch()
    x = torch.from_numpy(batch.images.transpose(0, 3, 1, 2).copy())
    scrambled, _ = scrambled_pixels(batch, "regions")
    out = permute_scrambled(x, scrambled, torch.Generator().manual_seed(1))
    for i in range(3):
        s = scrambled[i]
        assert torch.equal(out[i][:, ~s], x[i][:, ~s])
        # pixels move with all their channels: the multiset of (channel 0, channel 1) pairs is kept
        before = sorted(map(tuple, x[i][:, s].T.tolist()))
        after = sorted(map(tuple, out[i][:, s].T.tolist()))
        assert before == after
    assert not torch.equal(out[0], x[0])  # something moved
    assert torch.equal(out[2], x[2])  # no mask: unchanged


def test_permutation_is_seeded() -> None:
    batch = _batch()
    x = torch.from_numpy(batch.images.transpose(0, 3, 1, 2).copy())
    scrambled, _ = scrambled_pixels(batch, "regions")
    a = permute_scrambled(x, scrambled, torch.Generator().manual_seed(5))
    b = permute_scrambled(x, scrambled, torch.Generator().manual_seed(5))
    c = permute_scrambled(x, scrambled, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_mask_fraction_selects_a_seeded_share() -> None:
    paths = [f"p{i}" for i in range(10)]
    chosen = select_masks(paths, 0.3, seed=0)
    assert len(chosen) == 3 and chosen <= set(paths)
    assert chosen == select_masks(paths, 0.3, seed=0)
    assert select_masks(paths, 1.0, seed=0) is None
    with pytest.raises(AuditError, match="mask-fraction"):
        select_masks(paths, 0.0, seed=0)
