"""The WILDCAT pooling against hand-computed cases; bad options are one-line errors."""

from __future__ import annotations

import pytest
import torch

from audit.errors import AuditError
from audit.finetune.wildcat.head import WildcatHead, class_wise_pool, region_count, spatial_pool

# a 3×3 class map whose values, sorted, are 1 … 9
MAP = torch.tensor([[4.0, 9.0, 2.0], [7.0, 1.0, 8.0], [3.0, 6.0, 5.0]])


@pytest.mark.parametrize(("k_max", "k_min", "alpha", "expected"), [
    (2, 1, 0.7, (9 + 8) / 2 + 0.7 * 1),             # counts
    (1, 1, 1.0, 9 + 1),                              # max + min
    (9, 0, 0.7, 5.0),                                # every region: the mean; k⁻ = 0: no minimum term
    (3, 2, 0.0, (9 + 8 + 7) / 3),                    # α = 0 keeps the maxima only
    (0.5, 0.2, 0.7, (9 + 8 + 7 + 6 + 5) / 5 + 0.7 * (1 + 2) / 2),  # 0.5·9 = 4.5 → 5 (half up); 0.2·9 = 1.8 → 2
    (0.05, 0.05, 1.0, 9 + 1),                        # 0.45 rounds to 0: at least one region
])
def test_spatial_pooling_against_hand_computed_cases(k_max: float, k_min: float, alpha: float, expected: float) -> None:
    head = WildcatHead(1, 1, maps=1, k_max=k_max, k_min=k_min, alpha=alpha)
    with torch.no_grad():
        head.transfer.weight.fill_(1.0)
        head.transfer.bias.zero_()
        scores, maps = head(MAP[None, None])
    assert scores.shape == (1, 1) and maps.shape == (1, 1, 3, 3)
    assert scores.item() == pytest.approx(expected, abs=1e-6)
    assert torch.equal(maps[0, 0], MAP)


def test_class_wise_pooling_averages_each_class_s_consecutive_maps() -> None:
    z = torch.arange(2 * 6 * 2 * 2, dtype=torch.float32).reshape(2, 6, 2, 2)  # K = 2 classes, M = 3 maps
    pooled = class_wise_pool(z, classes=2, maps=3)
    assert pooled.shape == (2, 2, 2, 2)
    for n in range(2):
        assert torch.allclose(pooled[n, 0], (z[n, 0] + z[n, 1] + z[n, 2]) / 3)
        assert torch.allclose(pooled[n, 1], (z[n, 3] + z[n, 4] + z[n, 5]) / 3)


def test_the_head_pools_the_transferred_maps_per_class() -> None:
    """Two classes, two maps each, on a 2-channel feature map: class 0 reads channel 0, class 1 −channel 1."""
    head = WildcatHead(2, 2, maps=2, k_max=1, k_min=1, alpha=0.5)
    with torch.no_grad():
        head.transfer.weight.zero_()
        head.transfer.bias.zero_()
        head.transfer.weight[0:2, 0] = 1.0   # class 0, both maps: channel 0
        head.transfer.weight[2, 1] = -2.0    # class 1, map 0: −2 × channel 1; map 1: zero → mean −channel 1
    features = torch.stack([MAP, MAP.T])[None]
    scores, maps = head(features)
    assert torch.allclose(maps[0, 0], MAP) and torch.allclose(maps[0, 1], -MAP.T)
    assert torch.allclose(scores[0], torch.tensor([9 + 0.5 * 1, -1 + 0.5 * -9]))
    assert torch.allclose(spatial_pool(maps, 1, 1, 0.5), scores)


@pytest.mark.parametrize(("options", "words"), [
    ({"k_max": 10}, "--k-max 10: larger than the feature map's 9 regions"),
    ({"k_min": 12}, "--k-min 12: larger"),
    ({"k_max": 2.5}, "--k-max 2.5: a count above 1 must be a whole number"),
    ({"k_max": 0}, "--k-max 0"),
    ({"k_min": -0.2}, "--k-min -0.2"),
    ({"alpha": -0.1}, "--alpha -0.1"),
    ({"alpha": float("nan")}, "--alpha nan"),
    ({"maps": 0}, "--maps 0"),
])
def test_bad_options_are_one_line_errors(options: dict, words: str) -> None:
    with pytest.raises(AuditError) as caught:
        head = WildcatHead(1, 1, **{"maps": 1, "k_max": 1, "k_min": 1, "alpha": 0.7, **options})
        head(MAP[None, None])
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_region_counts() -> None:
    assert [region_count(k, 9, "--k") for k in (1, 9, 0.5, 0.1, 0.16, 0.99)] == [1, 9, 5, 1, 1, 9]
    assert region_count(0, 9, "--k-min", allow_zero=True) == 0
