"""Do the model's outputs fit the data's classes? Checked once, before any image is read.

Labels are class indices: image label k is compared with output k (accuracy, AUROC,
``--target label``, the fine-tuning losses). So, for a model with K outputs:

- K = 1 without ``--multilabel`` is refused: the softmax of one logit is 1 for every image, so
  every image is predicted as class 0 with probability 1 and the AUROC is 0.5 whatever the
  model. A binary classifier with one logit z (p = σ(z)) is audited by exporting two logits,
  ``torch.cat([-z / 2, z / 2], 1)``, whose softmax is exactly [1 − σ(z), σ(z)] (our choice:
  refuse rather than guess that the one output is a sigmoid's logit).
- A label k >= K (more data classes than outputs) is refused: no output scores that class.
- Names given with ``--class-names`` must put every data class that they name at its label's
  index: folders ``cat`` and ``dog`` are labels 0 and 1 (sorted), so with ``--class-names
  dog,cat`` every dog would be scored against output 1, the model's "cat".

Fewer data classes than outputs is fine (a subset of the model's classes).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from audit.errors import AuditError

if TYPE_CHECKING:
    from audit.data.dataset import Dataset
    from audit.models.classifier import Classifier

TWO_LOGITS = "torch.cat([-z / 2, z / 2], 1), whose softmax is [1 - sigmoid(z), sigmoid(z)]"
SHOWN = 5


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f", … ({len(names)} in all)" if len(names) > SHOWN else "")


def check_classes(classifier: Classifier, dataset: Dataset, data: Path, given_names: Sequence[str] | None = None) -> None:
    """Raise ``AuditError`` (one line naming the files and the fix) when ``classifier``'s outputs
    cannot score ``dataset``'s labels (module docstring). ``data`` is the folder or manifest as
    the user gave it; ``given_names`` the ``--class-names``, if any."""
    outputs, model = classifier.num_classes, classifier.path
    if outputs == 1 and not classifier.multilabel:
        raise AuditError(
            f"{model}: 1 output, and the softmax of one logit is 1 for every image (every image class 0, AUC 0.5); "
            f"for a binary classifier with logit z export two logits, e.g. {TWO_LOGITS}"
        )
    labels = [label for _, label in dataset.entries]
    largest = max(labels, default=-1)
    if largest >= outputs:
        classes = list(dataset.classes)
        path = next(path for path, label in dataset.entries if label == largest)
        extra = [classes[label] for label in sorted(set(labels)) if label >= outputs]
        raise AuditError(
            f"{data}: {len(classes)} data classes ({_listed(classes)}) but {model} has {outputs} output(s) "
            f"({path} is labelled {classes[largest]!r}, label {largest}); audit a model with an output per class, or "
            f"leave the images of {_listed(extra)} out of the data"
        )
    if given_names:
        index = {name: k for k, name in enumerate(given_names)}
        present = set(labels)
        for label, name in enumerate(dataset.classes):
            if label in present and index.get(name, label) != label:
                raise AuditError(
                    f"{data}: class {name!r} is label {label} (classes in order: {_listed(list(dataset.classes))}) but "
                    f"--class-names puts {name!r} at output {index[name]}; label the data in the model's output order "
                    f"(class folders whose sorted order is the model's, or a manifest with integer labels), or correct "
                    f"--class-names"
                )
