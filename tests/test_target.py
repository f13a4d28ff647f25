"""``--target``: one rule, parsed once, strict about labels (``audit.target``)."""

from __future__ import annotations

import numpy as np
import pytest

from audit.errors import AuditError
from audit.metrics.base import ImageColumns
from audit.target import ExplainedClasses, Target

PATHS = ["a.png", "b.png", "c.png"]


def test_the_three_rules() -> None:
    labels, predictions = np.array([1, 0, 2]), np.array([0, 0, 1])
    assert Target.parse("predicted", 3).resolve(PATHS, labels, predictions).tolist() == [0, 0, 1]
    assert Target.parse("label", 3).resolve(PATHS, labels, predictions).tolist() == [1, 0, 2]
    assert Target.parse(" 2 ", 3).resolve(PATHS, labels, predictions).tolist() == [2, 2, 2]
    assert str(Target.parse("2", 3)) == "2" and str(Target.parse("label", 3)) == "label"
    assert Target.parse("1", 2).describe(["cat", "dog"]) == "class 1 (dog) for every image"


@pytest.mark.parametrize("text", ["3", "-1", "-0", "1.0", "labels", ""])
def test_a_bad_option_is_one_line_naming_the_choices(text: str) -> None:
    with pytest.raises(AuditError) as error:
        Target.parse(text, 3)
    assert str(error.value) == f"--target {text.strip()!r}: use predicted, label or a class index 0..2"


def test_label_never_falls_back_to_the_prediction() -> None:
    label = Target.parse("label", 2)
    with pytest.raises(AuditError, match=r"^b\.png: --target label needs a label for every image"):
        label.resolve(PATHS, np.array([1, -1, 0]), np.array([0, 0, 0]))
    with pytest.raises(AuditError, match=r"^c\.png: label 2 is not one of the model's 2 outputs"):
        label.resolve(PATHS, np.array([1, 0, 2]), np.array([0, 0, 0]))


def test_explained_classes_count_what_was_explained() -> None:
    explained = ExplainedClasses(Target.parse("label", 2), ["cat", "dog"])
    explained.update(ImageColumns(PATHS, {"targets": np.array([1, 1, 0]), "predictions": np.array([1, 0, 0])}))
    explained.update(ImageColumns(["d.png"], {"targets": np.array([0]), "predictions": np.array([1])}))
    assert explained.compute() == {"rule": "the image's label", "by_class": {"cat": 2, "dog": 2}, "not_predicted": 2, "n": 4}
