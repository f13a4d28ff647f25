"""Everything a run accumulates, so that results.json can be written without the model, and
states of contiguous shards merge into the state of one run over them.

``RunState`` = the run's metadata (the "model" block, the dataset's root and classes, the
options, the methods' provenance, the partial per_image CSV files in order) + the declared
states of every metric (``audit.metrics.state``): data counts, performance, ablation,
probability-output checks, explained classes, and per method its map metrics, examples,
saliency-vs-ablation pairs and randomisation records.

Saved in a folder as ``state.json`` (metadata and the JSON-able states) and ``state.npz`` (every
numpy array and non-finite float, written with ``allow_pickle=False``; never pickle). A state
file that cannot be read is a one-line ``AuditError`` that names it.
"""

from __future__ import annotations

import json
import math
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from audit.errors import AuditError, first_line
from audit.metrics.ablation import ArtefactAblation
from audit.metrics.base import ImageColumns, Metric
from audit.metrics.intervention import SaliencyIntervention
from audit.metrics.performance import Performance
from audit.metrics.randomisation import RandomisationCheck
from audit.metrics.state import Composite, refuse_duplicates
from audit.metrics.subsets import PerformanceBySubset
from audit.metrics.suite import MethodMetrics
from audit.models.probability_outputs import ProbabilityOutputs
from audit.report.examples import ExampleKeeper
from audit.target import ExplainedClasses, Target

FORMAT = 1
STATE_JSON, STATE_NPZ = "state.json", "state.npz"
#: Options that must agree between merged states (everything but the shard and the command).
MERGED_OPTIONS = ("methods", "method_options", "target", "seed", "examples", "randomization_images")


class DataCounts(Metric):
    """The "data" block's counts: images read (their paths, in order), masks found, resized and
    unreadable, images skipped; with region boxes (``audit.data.boxes``) the CSV's description,
    the same in every part, and the boxes clipped at the border of the images read."""

    name = "data"

    def __init__(self) -> None:
        self.add_state("paths", [], "cat", dtype=str)
        for count in ("with_artefact", "with_region", "masks_resized"):
            self.add_state(count, 0, "sum")
        self.add_state("masks_unreadable", [], "cat", dtype=str)  # [path, reason] rows
        self.add_state("skipped", [], "cat", dtype=str)
        self.add_state("region_boxes", {}, "one")
        self.add_state("boxes_clipped", 0, "sum")
        self.add_state("boxes_outside", 0, "sum")

    def update(self, record: ImageColumns) -> None:
        self.paths.extend(record.paths)

    def record_pass(self, dataset: Any) -> None:
        """Counts from the dataset's pass (after streaming it)."""
        report = dataset.mask_report
        self.with_artefact += report.with_artefact
        self.with_region += report.with_region
        self.masks_resized += report.resized
        self.masks_unreadable.extend([s.path, s.reason] for s in report.unreadable)
        self.skipped.extend([s.path, s.reason] for s in dataset.skipped)
        self.boxes_clipped += report.boxes_clipped
        self.boxes_outside += report.boxes_outside
        if dataset.region_boxes is not None:
            self.region_boxes = dataset.region_boxes.describe()

    def compute(self) -> dict[str, Any]:
        def listed(rows: list) -> list[dict[str, str]]:
            return [{"path": str(path), "reason": str(reason)} for path, reason in rows]

        return {"images": len(self.paths), "with_artefact": self.with_artefact, "with_region": self.with_region,
                "masks_resized": self.masks_resized, "masks_unreadable": listed(self.masks_unreadable),
                "skipped": listed(self.skipped),
                "region_boxes": {**self.region_boxes, "clipped": self.boxes_clipped, "outside": self.boxes_outside}
                if self.region_boxes else None}


class MethodState(Composite):
    """Everything streamed for one saliency method."""

    def __init__(self, class_names: list[str], shape: tuple[int, int], examples: int) -> None:
        self.metrics = MethodMetrics(class_names)
        self.examples = ExampleKeeper(len(class_names), shape, examples)
        self.intervention = SaliencyIntervention()
        self.randomisation = RandomisationCheck()

    def parts(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "examples": self.examples, "intervention": self.intervention,
                "randomization": self.randomisation}


class RunState(Composite):
    """A run's accumulated state (module docstring). ``meta`` is JSON-able; see ``start``."""

    def __init__(self, meta: dict[str, Any]) -> None:
        self.meta = meta
        classes = meta["class_names"]
        self.target = Target.parse(meta["config"]["target"], len(classes))
        self.data = DataCounts()
        self.performance = Performance()
        self.subsets = PerformanceBySubset()
        self.ablation = ArtefactAblation()
        self.outputs = ProbabilityOutputs()
        self.explained = ExplainedClasses(self.target, classes)
        shape = tuple(meta["shape"])
        self.methods = {name: MethodState(classes, shape, meta["config"]["examples"]) for name in meta["config"]["methods"]}

    def parts(self) -> dict[str, Any]:
        return {"data": self.data, "performance": self.performance, "subsets": self.subsets, "ablation": self.ablation,
                "outputs": self.outputs, "explained": self.explained,
                **{f"method/{name}": state for name, state in self.methods.items()}}

    def update(self, record: ImageColumns) -> None:
        """The per-image metrics of one batch (``record``: labels, predictions, targets,
        probabilities, logits, artefact_present and the ablation's columns)."""
        for metric in (self.data, self.performance, self.subsets, self.ablation, self.outputs, self.explained):
            metric.update(record)

    def merge(self, other: RunState) -> None:
        """Fold ``other`` (the next contiguous part) in; refuses other options or an image seen twice."""
        mine, theirs = self.meta["config"], other.meta["config"]
        for option in MERGED_OPTIONS:
            if mine[option] != theirs[option]:
                raise AuditError(f"cannot merge runs with different {option} ({mine[option]!r} and {theirs[option]!r})")
        if self.meta["model"]["sha256"] != other.meta["model"]["sha256"]:
            raise AuditError(f"cannot merge runs of different models ({self.meta['model']['path']} and "
                             f"{other.meta['model']['path']}: the sha256 differs)")
        refuse_duplicates(self.data.paths, other.data.paths)
        super().merge(other)
        self.meta["csv"] = [*self.meta["csv"], *other.meta["csv"]]
        for key in ("device", "gpu"):  # parts may run on different machines: every one named, once
            seen = [part for part in f"{self.meta['run'][key] or ''}, {other.meta['run'][key] or ''}".split(", ") if part]
            self.meta["run"][key] = ", ".join(dict.fromkeys(seen)) or None

    def save(self, folder: Path) -> None:
        """``folder/state.json`` + ``folder/state.npz``; CSV paths inside ``folder`` are stored relative to it."""
        folder.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        meta = {**self.meta, "csv": [_relative(Path(p), folder, i) for i, p in enumerate(self.meta["csv"])]}
        tree = {"format": FORMAT, "meta": meta, "states": split_arrays(self.state_dict(), "", arrays)}
        with zipfile.ZipFile(folder / STATE_NPZ, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for key, array in arrays.items():
                with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
        staging = folder / (STATE_JSON + ".tmp")  # state.json last and whole: its presence marks a saved state
        staging.write_text(json.dumps(tree, allow_nan=False))
        staging.replace(folder / STATE_JSON)

    @classmethod
    def load(cls, folder: Path) -> RunState:
        for name in (STATE_JSON, STATE_NPZ):
            if not (folder / name).is_file():
                raise AuditError(f"{folder / name}: run state not found; run `audit run ... --shard I/N --out {folder}` first")
        try:
            tree = json.loads((folder / STATE_JSON).read_text())
            if tree.get("format") != FORMAT:
                raise AuditError(f"format {tree.get('format')!r}, expected {FORMAT}")
            meta = tree["meta"]
            meta["csv"] = [str(inside(folder, p)) for p in meta["csv"]]
            state = cls(meta)
        except Exception as exc:
            raise AuditError(f"{folder / STATE_JSON}: not a readable run state ({first_line(exc)}); rerun that part") from exc
        try:
            with np.load(folder / STATE_NPZ, allow_pickle=False) as npz:
                state.load_state_dict(join_arrays(tree["states"], {key: npz[key] for key in npz.files}))
        except Exception as exc:
            raise AuditError(f"{folder / STATE_NPZ}: not a readable run state ({first_line(exc)}); rerun that part") from exc
        return state


def _relative(path: Path, folder: Path, index: int) -> str:
    """``path`` relative to ``folder``; a file outside it is copied in first (a saved state
    holds its own per-image rows, and names nothing outside its folder)."""
    path, folder = path.resolve(), folder.resolve()
    if not path.is_relative_to(folder):
        path = Path(shutil.copyfile(path, folder / f"per_image.partial.{index + 1}.csv"))
    return str(path.relative_to(folder))


def inside(folder: Path, relative: str) -> Path:
    """``folder/relative`` when it stays inside ``folder``: a state names only its own files, so
    a hand-edited state.json cannot make a merge read /etc/passwd or another part's rows."""
    path = (folder / relative).resolve()
    if Path(relative).is_absolute() or not path.is_relative_to(folder.resolve()):
        raise AuditError(f"the per-image rows {relative!r} are not a file inside the part folder")
    return path


def split_arrays(value: Any, key: str, arrays: dict[str, np.ndarray]) -> Any:
    """``value`` with every numpy array and non-finite float moved to ``arrays`` (as {"npz": key})."""
    if isinstance(value, dict):
        return {k: split_arrays(v, f"{key}/{k}" if key else str(k), arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [split_arrays(v, f"{key}/{i}", arrays) for i, v in enumerate(value)]
    if isinstance(value, np.ndarray) or (isinstance(value, float) and not math.isfinite(value)):
        arrays[key] = np.asarray(value)
        return {"npz": key}
    return value


def join_arrays(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Undo ``_split``: 0-d arrays come back as Python scalars."""
    if isinstance(value, dict):
        if set(value) == {"npz"}:
            array = arrays[value["npz"]]
            return array.item() if array.ndim == 0 else array
        return {k: join_arrays(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [join_arrays(v, arrays) for v in value]
    return value
