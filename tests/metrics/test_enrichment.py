import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from audit.metrics.enrichment import ArtefactEnrichment
from metric_batches import build_batch


def enrichment_of(maps, artefact, **kwargs):
    metric = ArtefactEnrichment()
    metric.update(build_batch(maps, artefact, **kwargs))
    return metric


def test_enrichment_by_hand():
    g = np.array([[[4.0, -4.0], [1.0, 1.0]]])  # |g| sums to 10
    artefact = np.array([[[True, False], [False, False]]])  # a quarter of the image
    columns = enrichment_of(g, artefact).per_image()
    assert columns["artefact_saliency_share"] == [0.4]
    assert columns["artefact_area_share"] == [0.25]
    assert columns["artefact_enrichment"] == [pytest.approx(1.6)]


def test_mask_covering_whole_image_is_chance():
    g = np.random.default_rng(0).normal(size=(1, 5, 5))
    assert enrichment_of(g, np.ones((1, 5, 5), bool)).per_image()["artefact_enrichment"] == [
        pytest.approx(1.0)]


def test_zero_map_empty_mask_and_missing_mask_are_excluded_and_counted():
    maps = np.array([np.zeros((3, 3)), np.ones((3, 3)), np.ones((3, 3)), np.ones((3, 3))])
    artefact = np.ones((4, 3, 3), bool)
    artefact[1] = False
    metric = enrichment_of(maps, artefact, has_artefact=np.array([True, True, False, True]))
    result = metric.compute()
    assert result["excluded"] == {"no_artefact_mask": 1, "empty_artefact_mask": 1, "zero_map": 1}
    assert result["overall"]["n"] == 1 and result["overall"]["mean"] == 1.0
    values = metric.per_image()["artefact_enrichment"]
    assert [math.isnan(v) for v in values] == [True, True, True, False]


def test_overall_is_mean_with_t_interval_and_pooled_is_ratio_of_means():
    rng = np.random.default_rng(4)
    maps = rng.normal(size=(6, 6, 6))
    artefact = rng.random((6, 6, 6)) < 0.3
    artefact[:, 0, 0] = True
    labels = np.array([0, 0, 1, 1, 1, -1])
    metric = enrichment_of(maps, artefact, labels=labels)
    magnitude = np.abs(maps)
    shares = np.array([magnitude[i][artefact[i]].sum() / magnitude[i].sum() for i in range(6)])
    areas = artefact.mean(axis=(1, 2))
    per_image = shares / areas
    result = metric.compute()
    low, high = stats.t.interval(0.95, 5, loc=per_image.mean(), scale=stats.sem(per_image))
    assert result["overall"]["mean"] == pytest.approx(per_image.mean())
    assert (result["overall"]["ci_low"], result["overall"]["ci_high"]) == (
        pytest.approx(low), pytest.approx(high))
    assert result["pooled"]["value"] == pytest.approx(shares.mean() / areas.mean())
    assert result["by_label"]["1"]["mean"] == pytest.approx(per_image[2:5].mean())
    assert set(result["by_label"]) == {"0", "1"}


def test_pooled_without_any_defined_image_explains():
    result = enrichment_of(np.zeros((1, 2, 2)), np.ones((1, 2, 2), bool)).compute()
    assert result["pooled"]["value"] is None and "reason" in result["pooled"]


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, (5, 5), elements=st.one_of(
    st.just(0.0), st.floats(1e-3, 100), st.floats(-100, -1e-3))),
       arrays(bool, (5, 5)), st.floats(1e-3, 1e3))
def test_enrichment_unchanged_by_positive_scaling(g, mask, scale):
    original = enrichment_of(g[None], mask[None]).per_image()["artefact_enrichment"][0]
    scaled = enrichment_of(g[None] * scale, mask[None]).per_image()["artefact_enrichment"][0]
    if math.isnan(original):
        assert math.isnan(scaled)
    else:
        assert scaled == pytest.approx(original, rel=1e-5)
