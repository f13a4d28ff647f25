"""A part: the folder one shard of a run writes (``audit run ... --shard I/N --out PART``).

Layout: ``per_image.partial.csv`` (the base rows of the shard's range, in listing order), the
run state (``state.json`` and ``state.npz``, ``RunState.save``) and ``part.json``, the manifest. The folder is an
``OutputFolder`` whose index is part.json: everything is staged in ``PART/.partial/<run id>/``
and part.json is renamed into place LAST, so a part with a part.json is finished (its files'
sha256 are in it), and a killed shard keeps its rows in the staging folder.

part.json::

    {"format": "audit.part/1",
     "shard": {"index": I, "count": N, "start": first listing index, "stop": one past the last},
     "model": {"path": absolute, "sha256": of every model file},
     "options": every option that changes the results (below),
     "listing": {"sha256": of the sorted listing, "images": its length},
     "device": where it ran, "command": the command line, "run": {"id", "outputs"}}

The options that change results: the methods and their options, the target rule, the seed,
the batch size (batch boundaries may move float rounding), the randomisation image count, the
example count, the precision, the model's input spec (channels, size, mean, std, value range),
multilabel, the class names, whether masks and regions were given, the mask dilation and blur,
and --strict. The device is recorded but not compared (cpu and cuda parts agree to float
rounding). The listing hash covers (path, label) of every entry in order, so the parts of a
merge index the same images the same way even when their --data folders lie at different
mount points.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from audit.errors import AuditError
from audit.metrics.run_state import STATE_JSON, STATE_NPZ
from audit.shards import shard_range

if TYPE_CHECKING:
    from audit.pipeline import RunConfig

FORMAT = "audit.part/1"
MANIFEST = "part.json"
ROWS = "per_image.partial.csv"
#: What a part folder holds besides part.json.
PART_OUTPUTS = (ROWS, STATE_JSON, STATE_NPZ)


def listing_sha256(entries: Iterable[tuple[str, int]]) -> str:
    """sha256 over one JSON line ``["path", label]`` per entry, in listing order (JSON keeps a
    path holding a tab, a newline or an undecodable byte unambiguous)."""
    digest = hashlib.sha256()
    for path, label in entries:
        digest.update((json.dumps([path, int(label)]) + "\n").encode("ascii"))
    return digest.hexdigest()


def _plain(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples → lists, paths → strings), so that a manifest
    read from disk compares equal to one built in memory."""
    return json.loads(json.dumps(value, default=str))


def identity(classifier: Any, dataset: Any, masks: bool, regions: bool, config: RunConfig) -> dict[str, Any]:
    """The model, options and listing that every part of one run shares (module docstring)."""
    spec = classifier.spec
    return _plain({
        "model": {"sha256": classifier.sha256},
        "options": {
            "methods": config.methods,
            "method_options": {name: config.method_options.get(name, {}) for name in config.methods},
            "target": config.target,
            "seed": config.seed,
            "batch_size": config.batch_size,
            "randomization_images": config.randomization_images,
            "examples": config.examples,
            "precision": config.precision,
            "input": {"channels": spec.channels, "height": spec.height, "width": spec.width, "mean": spec.mean,
                      "std": spec.std, "value_range": spec.value_range},
            "multilabel": classifier.multilabel,
            "classes": classifier.class_names,
            "masks": masks,
            "regions": regions,
            "mask_dilate": dataset.mask_dilate,
            "mask_blur": dataset.mask_blur,
            "strict": dataset.strict,
        },
        "listing": {"sha256": listing_sha256(dataset.entries), "images": len(dataset.entries)},
    })


def manifest(run: dict[str, Any], index: int, count: int, model_path: Path, device: str, command: str) -> dict[str, Any]:
    """part.json's content for shard ``index``/``count`` of the run ``identity`` describes."""
    span = shard_range(run["listing"]["images"], index, count, run["options"]["batch_size"])
    return {
        "format": FORMAT,
        "shard": {"index": index, "count": count, "start": span.start, "stop": span.stop},
        "model": {"path": str(model_path), "sha256": run["model"]["sha256"]},
        "options": run["options"],
        "listing": run["listing"],
        "device": device,
        "command": command,
    }


def write_manifest(document: dict[str, Any], path: Path) -> Path:
    """Write part.json through a temporary file and a rename (a reader never sees half of it)."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path


@dataclass(frozen=True)
class Part:
    """A finished part folder and its manifest."""

    folder: Path
    document: dict[str, Any]

    @property
    def index(self) -> int:
        return self.document["shard"]["index"]

    @property
    def count(self) -> int:
        return self.document["shard"]["count"]

    @property
    def name(self) -> str:
        return f"{self.index}/{self.count}"

    def matches(self, run: dict[str, Any], index: int, count: int) -> bool:
        """Whether this part is shard ``index``/``count`` of the run ``identity`` describes."""
        same_run = self.document["model"]["sha256"] == run["model"]["sha256"] and \
            all(self.document[key] == run[key] for key in ("options", "listing"))
        return same_run and (self.index, self.count) == (index, count)


def read_part(folder: Path) -> Part:
    """The finished part in ``folder``, its files checked against part.json's hashes; a one-line
    error naming the folder when it is not one (missing, unfinished, malformed, tampered)."""
    from audit.report.output_folder import STAGING, verify_outputs

    path = folder / MANIFEST
    if not folder.is_dir():
        raise AuditError(f"{folder}: not a folder; give the part folders that `audit run ... --shard I/N --out PART` wrote")
    if not path.is_file():
        if (folder / STAGING).is_dir():
            raise AuditError(f"{folder}: unfinished part (no {MANIFEST}; its rows so far are in {folder / STAGING}); "
                             f"rerun its `audit run ... --shard I/N --out {folder}`")
        raise AuditError(f"{folder}: no {MANIFEST}, not a part; write one with `audit run ... --shard I/N --out {folder}`")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise AuditError(f"{path}: unreadable ({exc}); rerun the shard that wrote it") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        found = document.get("format") if isinstance(document, dict) else None
        raise AuditError(f"{path}: format {found!r}, expected {FORMAT!r}; rerun the shard with this version of audit")
    _check_fields(document, path)
    verify_outputs(folder, document, path)
    for name in PART_OUTPUTS:
        if not (folder / name).is_file() or (folder / name).is_symlink():
            raise AuditError(f"{folder / name}: missing from the part; rerun the shard that wrote {folder}")
    _check_state(folder, document)
    return Part(folder, document)


def _check_state(folder: Path, document: dict[str, Any]) -> None:
    """The run state's metadata (state.json) is the one of part.json's shard, before anything
    of the state is built or any file it names is read: the rows are this folder's
    per_image.partial.csv and nothing else (never a path outside the folder), and the shard,
    model, class names, map shape and options are part.json's (a hand-edited state.json, or
    one copied from another part, is refused)."""
    path = folder / STATE_JSON
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))["meta"]
        config, options = meta["config"], document["options"]
        expected = {
            "csv": [ROWS],
            "shard": [document["shard"]["index"], document["shard"]["count"]],
            "model": document["model"]["sha256"],
            "classes": options["classes"],
            "shape": [options["input"]["height"], options["input"]["width"]],
            **{key: options[key] for key in ("methods", "target", "seed", "batch_size", "examples",
                                             "randomization_images", "precision")},
        }
        found = {"csv": meta["csv"], "shard": config["shard"], "model": meta["model"]["sha256"],
                 "classes": meta["class_names"], "shape": meta["shape"], **{key: config[key] for key in expected if key in config}}
    except (OSError, ValueError, RecursionError, KeyError, TypeError) as exc:
        raise AuditError(f"{path}: not a readable run state ({type(exc).__name__}: {exc}); rerun the shard that wrote "
                         f"{folder}") from None
    if found != expected:
        key = next(k for k in expected if found.get(k) != expected[k])
        raise AuditError(f"{path}: its {key} ({json.dumps(found.get(key))[:80]}) is not its part.json's "
                         f"({json.dumps(expected[key])[:80]}); rerun the shard that wrote {folder}")


def _check_fields(document: dict[str, Any], path: Path) -> None:
    """The manifest's fields have their types and the shard's range is the one its I/N gives."""
    try:
        shard, listing = document["shard"], document["listing"]
        index, count, images = shard["index"], shard["count"], listing["images"]
        batch = document["options"]["batch_size"]
        valid = all(type(n) is int for n in (index, count, images, shard["start"], shard["stop"], batch)) and batch >= 1 \
            and 1 <= index <= count and isinstance(document["options"], dict) \
            and isinstance(document["model"]["sha256"], str) and isinstance(listing["sha256"], str)
        span = shard_range(images, index, count, batch) if valid else None
        valid = valid and (shard["start"], shard["stop"]) == (span.start, span.stop)
    except (KeyError, TypeError, ValueError):
        valid = False
    if not valid:
        raise AuditError(f"{path}: malformed manifest (shard, range, model, options or listing); rerun the shard that wrote it")


def difference(first: Any, other: Any, where: str = "") -> str | None:
    """The first key path where two JSON values differ, as ``key: A vs B``; None when equal."""
    if isinstance(first, dict) and isinstance(other, dict):
        for key in sorted(set(first) | set(other)):
            found = difference(first.get(key), other.get(key), f"{where}.{key}" if where else key)
            if found:
                return found
        return None
    return None if first == other else f"{where}: {json.dumps(other)} vs {json.dumps(first)}"


def check_same_run(parts: list[Part]) -> None:
    """Every part comes from the first one's model, options and listing, with its shard count."""
    first = parts[0]
    checks: list[tuple[str, Callable[[Part], Any]]] = [
        ("model (sha256)", lambda p: p.document["model"]["sha256"]),
        ("dataset listing (sha256)", lambda p: p.document["listing"]["sha256"]),
        ("shard count", lambda p: p.count),
    ]
    for part in parts[1:]:
        for what, value in checks:
            if value(part) != value(first):
                raise AuditError(f"{part.folder}: its {what} differs from {first.folder}'s ({value(part)} vs {value(first)}); "
                                 f"merge only the parts of one run")
        if found := difference(first.document["options"], part.document["options"]):
            raise AuditError(f"{part.folder}: its options differ from {first.folder}'s ({found}); merge only the parts of one run")


def in_shard_order(parts: list[Part]) -> list[Part]:
    """``parts`` ordered by shard, refusing a shard given twice or missing (never double-count)."""
    check_same_run(parts)
    by_index: dict[int, Part] = {}
    for part in parts:
        if part.index in by_index:
            raise AuditError(f"shard {part.name} given twice: {by_index[part.index].folder} and {part.folder}; give each part once")
        by_index[part.index] = part
    count = parts[0].count
    missing = [i for i in range(1, count + 1) if i not in by_index]
    if missing:
        names = ", ".join(f"{i}/{count}" for i in missing)
        raise AuditError(f"shard {names} missing: the parts cover {len(by_index)} of {count} shards; "
                         f"run `audit run ... --shard {missing[0]}/{count} --out PART` and merge it too")
    return [by_index[i] for i in range(1, count + 1)]
