import json
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from audit.data.batch import Batch
from audit.metrics.ablation import ArtefactAblation
from audit.metrics.base import ImageColumns
from audit.models.classifier import from_module
from audit.models.spec import InputSpec
from audit.stages.ablation import ablate, ablation_columns

SPEC = InputSpec(3, 4, 5, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), value_range=(0.0, 2.0))


class Spy(nn.Module):
    """A linear classifier that records every input it sees."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.linear = nn.Linear(3 * 4 * 5, classes)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        return self.linear(x.flatten(1)) * 5.0


def make_batch(n: int = 6, seed: int = 0) -> Batch:
    rng = np.random.default_rng(seed)
    artefact = rng.random((n, 4, 5)) < 0.3
    region = rng.random((n, 4, 5)) < 0.5
    artefact[0] = False  # has a mask file but an empty mask
    region[1] = False
    has_artefact = np.ones(n, bool)
    has_artefact[2] = False  # no mask file
    has_region = np.ones(n, bool)
    has_region[3] = False
    return Batch(paths=[f"{i}.png" for i in range(n)], labels=rng.integers(0, 3, n),
                 images=rng.random((n, 4, 5, 3)).astype(np.float32), artefact=artefact,
                 region=region, has_artefact=has_artefact, has_region=has_region)


def ablation_stage(metric, batch, classifier, probabilities, target):
    """The stage's columns for the batch, accumulated by ``metric``."""
    columns = ablation_columns(batch, classifier, probabilities, target)
    metric.update(ImageColumns(batch.paths, columns))
    return columns


def forward(classifier, batch):
    probabilities = classifier.probabilities(classifier.logits(SPEC.to_tensor(batch.images))).numpy()
    return probabilities, probabilities.argmax(axis=1)


def hand_ablate(image: np.ndarray, mask: np.ndarray, keep: bool) -> np.ndarray:
    out = image.copy()
    mean = [image[:, :, c].sum() / (image.shape[0] * image.shape[1]) for c in range(3)]
    for i in range(image.shape[0]):
        for j in range(image.shape[1]):
            if bool(mask[i, j]) != keep:
                out[i, j] = mean
    return out


def test_same_and_delta_match_a_hand_ablated_forward_pass():
    module = Spy()
    classifier = from_module(module, SPEC, ["a", "b", "c"])
    batch = make_batch()
    before, predictions = forward(classifier, batch)
    metric = ArtefactAblation()
    result = ablation_stage(metric, batch, classifier, before, predictions)
    for kind, masks, eligible in (("artefact", batch.artefact, [1, 3, 4, 5]),
                                  ("region", batch.region, [0, 2, 4, 5])):
        same, delta = result[f"{kind}_same"], result[f"{kind}_delta"]
        for i in range(len(batch)):
            if i not in eligible:
                assert math.isnan(same[i]) and math.isnan(delta[i])
                continue
            image = hand_ablate(batch.images[i], masks[i], keep=kind == "region")[None]
            after = torch.softmax(module(SPEC.to_tensor(image)), dim=1)[0].detach().numpy()
            t = predictions[i]
            assert same[i] == float(after.argmax() == t)
            assert delta[i] == pytest.approx(after[t] - before[i, t], abs=1e-6)
    columns = metric.per_image()
    assert set(columns) == {"ablation_artefact_same", "ablation_artefact_delta",
                            "ablation_region_same", "ablation_region_delta"}
    np.testing.assert_array_equal(columns["ablation_artefact_delta"], result["artefact_delta"])


def test_fill_is_the_image_mean_in_image_space_which_equals_the_normalised_mean():
    module = Spy()
    classifier = from_module(module, SPEC, ["a", "b", "c"])
    batch = make_batch()
    before, predictions = forward(classifier, batch)
    module.seen.clear()
    ablation_stage(ArtefactAblation(), batch, classifier, before, predictions)
    artefact_input = module.seen[0]  # the artefact pass: images 1, 3, 4, 5
    normalised = SPEC.to_tensor(batch.images[[1, 3, 4, 5]])
    masks = torch.from_numpy(batch.artefact[[1, 3, 4, 5]])
    for k in range(4):
        channel_means = normalised[k].mean(dim=(1, 2))
        filled = artefact_input[k][:, masks[k]]  # (C, |A|)
        torch.testing.assert_close(filled, channel_means[:, None].expand_as(filled))
        torch.testing.assert_close(artefact_input[k][:, ~masks[k]], normalised[k][:, ~masks[k]])


def test_ablate_keep_replaces_the_outside():
    image = np.arange(8, dtype=np.float32).reshape(1, 2, 4, 1)  # mean 3.5
    mask = np.array([[[True, False, False, False], [False, False, False, True]]])
    np.testing.assert_array_equal(ablate(image, mask, keep=False)[0, :, :, 0],
                                  [[3.5, 1, 2, 3], [4, 5, 6, 3.5]])
    np.testing.assert_array_equal(ablate(image, mask, keep=True)[0, :, :, 0],
                                  [[0, 3.5, 3.5, 3.5], [3.5, 3.5, 3.5, 7]])


def test_summary_exclusions_and_changed_to():
    classifier = from_module(Spy(), SPEC, ["a", "b", "c"])
    batch = make_batch(n=12, seed=4)
    before, predictions = forward(classifier, batch)
    metric = ArtefactAblation()
    result = ablation_stage(metric, batch, classifier, before, predictions)
    summary = metric.compute()
    art = summary["artefact"]
    assert art["excluded"] == {"no_artefact_mask": 1, "empty_artefact_mask": 1}
    assert summary["region"]["excluded"] == {"no_region_mask": 1, "empty_region_mask": 1}
    same = result["artefact_same"][~np.isnan(result["artefact_same"])]
    assert art["n"] == 10 == art["unchanged"]["n"]
    assert art["unchanged"]["mean"] == pytest.approx(same.mean())
    expected = stats.binomtest(int(same.sum()), 10).proportion_ci(method="exact")
    assert [art["unchanged"]["ci_low"], art["unchanged"]["ci_high"]] == pytest.approx([expected.low, expected.high])
    assert art["unchanged"]["interval"] == "clopper-pearson"
    assert art["delta_probability"]["interval"] == "student-t"
    delta = result["artefact_delta"][~np.isnan(result["artefact_delta"])]
    half = 2.2621571627409915 * delta.std(ddof=1) / math.sqrt(10)  # t_{0.975, 9}
    assert art["delta_probability"]["ci_low"] == pytest.approx(delta.mean() - half)
    assert sum(art["changed_to"].values()) == int(np.sum(same == 0))
    json.dumps(summary, allow_nan=False)


def test_a_model_that_ignores_the_artefact_keeps_every_prediction():
    class MaskedSum(nn.Module):  # looks only at pixel (0, 0), never in the artefact below
        def forward(self, x):
            return torch.stack([x[:, 0, 0, 0], -x[:, 0, 0, 0]], dim=1)

    spec = InputSpec(1, 3, 3)
    rng = np.random.default_rng(1)
    artefact = np.zeros((5, 3, 3), bool)
    artefact[:, 1:, 1:] = True
    batch = Batch([str(i) for i in range(5)], np.zeros(5, int), rng.random((5, 3, 3, 1), np.float32),
                  artefact, np.zeros((5, 3, 3), bool), np.ones(5, bool), np.zeros(5, bool))
    classifier = from_module(MaskedSum(), spec, ["0", "1"])
    probabilities = classifier.probabilities(classifier.logits(spec.to_tensor(batch.images))).numpy()
    metric = ArtefactAblation()
    ablation_stage(metric, batch, classifier, probabilities, probabilities.argmax(1))
    result = metric.compute()
    assert result["artefact"]["unchanged"]["mean"] == 1.0
    # 5 of 5 unchanged: the 95% bound solves p^5 = 0.025, not a certain 100%
    assert result["artefact"]["unchanged"]["ci_low"] == pytest.approx(0.025 ** (1 / 5))
    assert result["artefact"]["delta_probability"]["mean"] == pytest.approx(0.0, abs=1e-7)
    assert result["region"]["n"] == 0 and result["region"]["unchanged"]["mean"] is None
    assert result["region"]["reason"] == "no image could be scored (no region mask: 5)"
    assert "reason" not in result["artefact"]


def test_streaming_in_batches_gives_the_same_results():
    classifier = from_module(Spy(), SPEC, ["a", "b", "c"])
    batch = make_batch(n=9, seed=2)
    before, predictions = forward(classifier, batch)
    whole = ArtefactAblation()
    ablation_stage(whole, batch, classifier, before, predictions)
    parts = ArtefactAblation()
    for s in (slice(0, 4), slice(4, 9)):
        part = Batch(batch.paths[s], batch.labels[s], batch.images[s], batch.artefact[s],
                     batch.region[s], batch.has_artefact[s], batch.has_region[s])
        ablation_stage(parts, part, classifier, before[s], predictions[s])
    assert json.dumps(whole.per_image()) == json.dumps(parts.per_image())
    np.testing.assert_equal(whole.compute(), parts.compute())
