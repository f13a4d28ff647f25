import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.metrics import ArtefactEnrichment, Aurrac, GlobalSaliency, RegionLocalisation
from metric_batches import random_batch, split_batch

METRICS = [GlobalSaliency, ArtefactEnrichment, Aurrac, RegionLocalisation,
           lambda: Aurrac(score="peak", absolute=True),
           lambda: RegionLocalisation(blur_sigma=1.0, absolute=False)]


def run(make_metric, batches):
    metric = make_metric()
    for batch in batches:
        metric.update(batch)
    return json.dumps(metric.compute(), allow_nan=False), json.dumps(metric.per_image())


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 2**32 - 1))
@pytest.mark.parametrize("make_metric", METRICS)
def test_batches_of_1_3_and_all_give_identical_results(make_metric, seed):
    batch = random_batch(seed, n=int(np.random.default_rng(seed).integers(1, 14)))
    results = {size: run(make_metric, split_batch(batch, size)) for size in (1, 3, len(batch))}
    assert results[1] == results[3] == results[len(batch)]


@pytest.mark.parametrize("make_metric", METRICS)
def test_per_image_columns_align_with_the_paths_seen(make_metric):
    batches = split_batch(random_batch(11, n=10), 4)
    metric = make_metric()
    for batch in batches:
        metric.update(batch)
    columns = metric.per_image()
    assert columns and all(len(values) == 10 for values in columns.values())


@pytest.mark.parametrize("make_metric", METRICS)
def test_no_batch_gives_json_ready_nulls(make_metric):
    metric = make_metric()
    json.dumps(metric.compute(), allow_nan=False)
    assert all(values == [] for values in metric.per_image().values())
