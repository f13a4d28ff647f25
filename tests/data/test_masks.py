"""Mask operations against hand-computed arrays."""

from __future__ import annotations

import numpy as np
import pytest

from audit.data.masks import binarise, blur_mask, dilate_mask, resize_mask


def _dot(size: int = 9, at: tuple[int, int] = (4, 4)) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[at] = True
    return mask


def test_binarise_any_nonzero_pixel_any_channel():
    grey = np.array([[0.0, 0.01], [1.0, 0.0]])
    rgb = np.zeros((1, 2, 3))
    rgb[0, 1, 2] = 0.5
    np.testing.assert_array_equal(binarise(grey), [[False, True], [True, False]])
    np.testing.assert_array_equal(binarise(rgb), [[False, True]])


def test_resize_mask_nearest_neighbour_stays_binary():
    mask = np.array([[True, False], [False, True]])
    expected = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], dtype=bool)
    out = resize_mask(mask, (4, 4))
    assert out.dtype == bool
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(resize_mask(expected, (2, 2)), mask)


def test_dilate_mask_square_of_pixels():
    expected = np.zeros((9, 9), dtype=bool)
    expected[2:7, 2:7] = True
    np.testing.assert_array_equal(dilate_mask(_dot(), 2), expected)
    np.testing.assert_array_equal(dilate_mask(_dot(), 0), _dot())


def test_blur_mask_grows_by_the_truncated_gaussian_support():
    five = np.zeros((9, 9), dtype=bool)
    five[2:7, 2:7] = True  # sigma 0.5: kernel radius round(4 * 0.5) = 2
    seven = np.zeros((9, 9), dtype=bool)
    seven[1:8, 1:8] = True  # sigma 0.8: radius round(3.2) = 3
    np.testing.assert_array_equal(blur_mask(_dot(), 0.5), five)
    np.testing.assert_array_equal(blur_mask(_dot(), 0.8), seven)
    np.testing.assert_array_equal(blur_mask(_dot(), 0.0), _dot())


def test_blur_mask_at_the_border_and_empty_mask():
    corner = np.zeros((5, 5), dtype=bool)
    corner[:3, :3] = True
    np.testing.assert_array_equal(blur_mask(_dot(5, (0, 0)), 0.5), corner)
    assert not blur_mask(np.zeros((5, 5), dtype=bool), 0.5).any()


@pytest.mark.parametrize("source, target", [((7, 5), (28, 28)), ((28, 28), (7, 9)), ((30, 30), (28, 28)), ((13, 17), (29, 31))])
def test_resize_mask_matches_scikit_image_nearest(source, target):
    from skimage.transform import resize

    mask = np.random.default_rng(sum(source + target)).random(source) > 0.6
    expected = resize(mask, target, order=0, anti_aliasing=False).astype(bool)
    np.testing.assert_array_equal(resize_mask(mask, target), expected)
