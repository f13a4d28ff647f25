from dataclasses import replace

import numpy as np
import pytest

from audit.errors import AuditError
from metric_batches import build_batch


def test_from_predictions_derives_labelled_and_correct():
    batch = build_batch(np.zeros((3, 2, 2)), labels=np.array([1, -1, 0]),
                        predictions=np.array([1, 1, 1]))
    assert batch.labelled.tolist() == [True, False, True]
    assert batch.correct.tolist() == [True, False, False]
    assert len(batch) == 3


def test_mask_shape_mismatch_is_an_audit_error():
    with pytest.raises(AuditError, match="artefact masks have shape"):
        build_batch(np.zeros((2, 4, 4)), artefact=np.zeros((2, 3, 4)))


def test_per_image_array_length_mismatch_is_an_audit_error():
    good = build_batch(np.zeros((2, 4, 4)))
    with pytest.raises(AuditError, match="probabilities has shape"):
        replace(good, probabilities=np.zeros(3))


def test_correct_without_label_is_rejected():
    good = build_batch(np.zeros((1, 2, 2)))
    with pytest.raises(AuditError, match="label is unknown"):
        replace(good, labels=np.array([-1]), labelled=np.array([False]), correct=np.array([True]))


def test_maps_must_be_three_dimensional():
    good = build_batch(np.zeros((1, 2, 2)))
    with pytest.raises(AuditError, match="saliency maps have shape"):
        replace(good, maps=np.zeros((1, 4)))
