"""The streaming metric interface: ``update`` per batch, ``compute`` once at the end, and
``merge`` / ``state_dict`` / ``load_state_dict`` over declared states (``audit.metrics.state``).

Metrics keep per-image scalars (and O(1) running sums) only, never the maps, so memory grows
with the number of images, not with images × pixels. Metrics that look at maps take a
``MapBatch``; the others take one ``ImageColumns`` record per batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import torch

from audit.errors import AuditError
from audit.metrics import device_kernels, host_kernels
from audit.metrics.state import Stateful
from audit.metrics.tensors import Maps, as_tensor


@dataclass
class MapBatch:
    """One batch of saliency maps for one method, with everything the metrics need.

    paths: image ids (N). labels: (N,) int, -1 where unknown. predictions: (N,) int.
    probabilities: (N,) probability of the explained class (``--target``, the class the maps
    explain; the predicted class by default): pointwise detection's confidence.
    correct: (N,) bool, prediction == label; False where the label is unknown.
    labelled: (N,) bool, label known (label >= 0).
    maps: (N, H, W) float32 saliency for the explained class (``--target``), possibly signed: a
    torch tensor on the device the method ran on (the metrics compute there), or numpy. Pixels equal in
    exact arithmetic must be bit-equal (methods compute them so: Grad-CAM's ``upsample``), so
    that the metrics' tie rules, not float32 rounding, decide ties, and an image gets the same
    rank-based values at every batch size (README, "Stable ranking").
    artefact / region: (N, H, W) bool masks; has_artefact / has_region: (N,) bool, whether the
    image has a mask file at all (an image without one has an all-False mask).
    """

    paths: list[str]
    labels: np.ndarray
    predictions: np.ndarray
    probabilities: np.ndarray
    correct: np.ndarray
    labelled: np.ndarray
    maps: Maps
    artefact: np.ndarray
    region: np.ndarray
    has_artefact: np.ndarray
    has_region: np.ndarray
    _on_device: dict[str, torch.Tensor] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.paths)
        if self.maps.ndim != 3 or self.maps.shape[0] != n:
            raise AuditError(f"saliency maps have shape {self.maps.shape}; expected ({n}, H, W)")
        for name in ("artefact", "region"):
            shape = np.shape(getattr(self, name))
            if shape != tuple(self.maps.shape):
                raise AuditError(f"{name} masks have shape {shape}; expected {self.maps.shape}")
        for name in ("labels", "predictions", "probabilities", "correct", "labelled",
                     "has_artefact", "has_region"):
            shape = np.shape(getattr(self, name))
            if shape != (n,):
                raise AuditError(f"{name} has shape {shape}; expected ({n},)")
        if np.any(self.correct & ~self.labelled):
            raise AuditError("correct is True for an image whose label is unknown; set it False")

    @classmethod
    def from_predictions(
        cls,
        paths: list[str],
        labels: np.ndarray,
        predictions: np.ndarray,
        probabilities: np.ndarray,
        maps: Maps,
        artefact: np.ndarray,
        region: np.ndarray,
        has_artefact: np.ndarray,
        has_region: np.ndarray,
    ) -> MapBatch:
        """Build a batch, deriving ``labelled`` (label >= 0) and ``correct`` from the labels."""
        labels = np.asarray(labels)
        predictions = np.asarray(predictions)
        labelled = labels >= 0
        return cls(
            paths=list(paths),
            labels=labels,
            predictions=predictions,
            probabilities=np.asarray(probabilities),
            correct=labelled & (labels == predictions),
            labelled=labelled,
            maps=maps if isinstance(maps, torch.Tensor) else np.asarray(maps),
            artefact=np.asarray(artefact, dtype=bool),
            region=np.asarray(region, dtype=bool),
            has_artefact=np.asarray(has_artefact, dtype=bool),
            has_region=np.asarray(has_region, dtype=bool),
        )

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def on_host(self) -> bool:
        """Whether the maps are in host memory (numpy, or a CPU tensor)."""
        return on_host(self.maps)

    @property
    def kernels(self) -> ModuleType:
        """The metric kernels for these maps (``kernels_for``)."""
        return kernels_for(self.maps)

    def rows_index(self, chosen: np.ndarray) -> np.ndarray | torch.Tensor:
        """``chosen`` (N,) bool as an index of rows where the maps are."""
        chosen = np.asarray(chosen, dtype=bool)
        return chosen if self.on_host else torch.from_numpy(chosen).to(self.maps.device)

    def rows(self, name: str, chosen: np.ndarray) -> np.ndarray | torch.Tensor:
        """The ``chosen`` (N,) bool images of ``maps``, ``artefact`` or ``region`` as (E, H·W)
        rows where the maps are (``rows_like``); the masks move to the maps' device once per
        batch, whichever metrics ask."""
        if name not in self._on_device:
            self._on_device[name] = rows_like(getattr(self, name), self.maps)
        return self._on_device[name][self.rows_index(chosen)]


def on_host(maps: Maps) -> bool:
    """Whether ``maps`` are in host memory (numpy, or a CPU tensor)."""
    return not isinstance(maps, torch.Tensor) or maps.device.type == "cpu"


def kernels_for(maps: Maps) -> ModuleType:
    """``host_kernels`` (numpy) for maps in host memory, ``device_kernels`` (torch, on the
    maps' device) otherwise: numpy's sort and partition are far faster on the CPU."""
    return host_kernels if on_host(maps) else device_kernels


def rows_like(values: Maps, maps: Maps) -> np.ndarray | torch.Tensor:
    """(E, ...) ``values`` as (E, N) rows where ``maps`` are: numpy for maps in host memory (a
    CPU tensor is viewed, not copied), a tensor on the maps' device otherwise."""
    if on_host(maps):
        array = values.detach().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
        return array.reshape(len(array), -1)
    return as_tensor(values, maps.device).reshape(len(values), -1)


@dataclass
class ImageColumns:
    """One batch's per-image columns for the metrics that do not look at maps: ``paths`` (N)
    and named arrays whose first axis has N rows (``labels``, ``probabilities`` (N, K), the
    ablation's columns, ...)."""

    paths: list[str]
    columns: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        for name, values in self.columns.items():
            if np.shape(values)[:1] != (len(self.paths),):
                raise AuditError(f"column {name} has shape {np.shape(values)}; expected ({len(self.paths)}, ...)")

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def __len__(self) -> int:
        return len(self.paths)


class Metric(Stateful, ABC):
    """A streaming metric with declared, mergeable states."""

    name: str

    @abstractmethod
    def update(self, batch: MapBatch | ImageColumns) -> None:
        """Reduce the batch to per-image numbers (and running sums); never keep the maps."""

    @abstractmethod
    def compute(self) -> dict:
        """JSON-ready results; a value that cannot be computed is None with a "reason"."""

    def per_image(self) -> dict[str, list]:
        """Columns for per_image.csv, aligned with the order of the paths seen; NaN if undefined."""
        return {}


def mask_exclusion(kind: str, has_mask: bool, mask: np.ndarray) -> str | None:
    """Why an image has no score against its ``kind`` ("artefact" or "region") mask:
    "no_<kind>_mask", "empty_<kind>_mask", or None."""
    if not has_mask:
        return f"no_{kind}_mask"
    if not mask.any():
        return f"empty_{kind}_mask"
    return None


def exclusion_reason(excluded: dict[str, int]) -> str:
    """Why nothing was scored: "no image could be scored (<reason>: <count>, ...)"."""
    counts = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in excluded.items() if v)
    return f"no image could be scored ({counts or 'no images'})"


def scored_images(batch: Any, excluded: dict[str, int], kind: str = "artefact", labelled_only: bool = False) -> np.ndarray:
    """(N,) bool: images of ``batch`` (a ``MapBatch`` or a data ``Batch``) with a non-empty
    ``kind`` mask (and a label when ``labelled_only``); the others are counted in ``excluded``
    by reason."""
    masks, has_mask = getattr(batch, kind), getattr(batch, f"has_{kind}")
    scored = np.zeros(len(masks), dtype=bool)
    for i in range(len(masks)):
        reason = mask_exclusion(kind, bool(has_mask[i]), masks[i])
        if reason is None and labelled_only and not batch.labelled[i]:
            reason = "unlabelled"
        if reason is None:
            scored[i] = True
        else:
            excluded[reason] += 1
    return scored
