"""What one ``audit run`` audits, as plain values: the files and the options that load them.

``RunInputs`` is what a shard needs to open the model and the dataset on its own, in this
process or in a Ray worker on another machine (the paths must then be readable there: a shared
filesystem or an object-store mount). ``open`` is the one way ``audit run``, a shard and a Ray
task load them, so every part sees the same classifier and the same sorted listing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from audit.models.loader import ModelOptions


@dataclass(frozen=True)
class RunInputs:
    model: Path
    data: Path
    masks: Path | None = None
    regions: Path | None = None
    options: ModelOptions = ModelOptions()
    mask_dilate: int = 0
    mask_blur: float = 0.0
    strict: bool = False
    autoencoder: Path | None = None

    def absolute(self) -> RunInputs:
        """The same inputs by absolute paths (a Ray worker may start in another folder)."""
        return replace(self, **{name: None if path is None else Path(path).absolute() for name, path in
                                (("model", self.model), ("data", self.data), ("masks", self.masks), ("regions", self.regions),
                                 ("autoencoder", self.autoencoder))})

    def paths(self) -> tuple[Path | None, ...]:
        """Every input file or folder (no output may replace one)."""
        return (self.model, self.data, self.masks, self.regions, self.autoencoder)

    def open(self) -> tuple[Any, Any]:
        """(classifier, dataset): the model loaded with ``options``, the dataset indexed at its
        input size, their classes checked; the dataset's class names name the outputs when
        ``--class-names`` is not given and the counts agree."""
        from audit.data.compatibility import check_classes
        from audit.data.dataset import open_dataset
        from audit.models.loader import load_classifier

        classifier = load_classifier(self.model, self.options)
        dataset = open_dataset(
            self.data,
            size=(classifier.spec.height, classifier.spec.width),
            channels=classifier.spec.channels,
            masks=self.masks,
            regions=self.regions,
            mask_blur=self.mask_blur,
            mask_dilate=self.mask_dilate,
            strict=self.strict,
        )
        check_classes(classifier, dataset, self.data, self.options.class_names)
        if self.options.class_names is None and len(dataset.classes) == classifier.num_classes:
            classifier.class_names = list(dataset.classes)
        return classifier, dataset
