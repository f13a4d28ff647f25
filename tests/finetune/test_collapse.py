"""Collapse signs on hand-made outputs, and which epoch a collapse is dated to."""

from __future__ import annotations

import math

import numpy as np

from audit.finetune.collapse import auc_at_chance, collapse_epoch, epoch_signs

RNG = np.random.default_rng(0)
VARIED = RNG.normal(size=(20, 2))
FEATURES = RNG.normal(size=(20, 8))


def test_a_trained_model_shows_no_sign() -> None:
    assert epoch_signs(0.1, VARIED, FEATURES) == []


def test_a_constant_network_shows_every_sign() -> None:
    logits = np.tile([0.3, 0.3], (20, 1)) + 1e-6 * RNG.normal(size=(20, 2))
    features = np.tile(RNG.normal(size=8), (20, 1))
    assert epoch_signs(math.log(2), logits, features) == [
        "classification loss at ln K", "constant predictions", "features without variance"]


def test_saturated_probabilities_that_still_rank_are_not_constant() -> None:
    logits = np.stack([np.zeros(20), 40 + np.arange(20.0)], axis=1)  # every p(class 1) rounds to 1.0
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    assert np.std(probabilities / probabilities.sum(axis=1, keepdims=True), axis=0).max() < 1e-12
    assert "constant predictions" not in epoch_signs(0.1, logits, FEATURES)


def test_the_loss_sign_is_a_band_around_ln_k() -> None:
    three = RNG.normal(size=(20, 3))
    assert "classification loss at ln K" in epoch_signs(1.04 * math.log(3), three, None)
    assert epoch_signs(1.06 * math.log(3), three, None) == []  # worse than chance is not a constant output
    assert epoch_signs(0.94 * math.log(3), three, None) == []
    assert epoch_signs(math.nan, three, None) == ["loss not finite"]


def test_the_collapse_is_dated_to_the_start_of_the_stretch_that_reaches_the_end() -> None:
    signs = [[], ["x"], [], ["x"], ["x"], ["x"]]
    assert collapse_epoch(signs, 6) == 4
    assert collapse_epoch(signs, 2) == 2
    assert collapse_epoch(signs, 3) is None


def test_auc_at_chance_when_the_interval_covers_one_half() -> None:
    assert auc_at_chance((0.45, 0.6)) and auc_at_chance((0.5, 0.5))
    assert not auc_at_chance((0.51, 0.7)) and not auc_at_chance(None)
