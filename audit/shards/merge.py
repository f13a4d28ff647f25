"""Merging the parts of a sharded run into the results one run over the whole dataset gives.

The parts are checked first (``audit.shards.part``: same model sha256, options and listing,
shards 1..N each exactly once, every part finished and its files unchanged), then their run
states are loaded and merged in shard order (``RunState.merge``, which also refuses an image
seen twice) and ``finish_run`` writes per_image.csv (the parts' rows in shard order, then the
metric columns), maps and results.json. The classifier is loaded again, from the path the
parts recorded, only when a Latent Shift method ran (its strips need the model); it must
still have the recorded sha256.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from audit.errors import AuditError
from audit.shards.part import Part, in_shard_order, read_part


def read_parts(folders: list[Path]) -> list[Part]:
    """The parts in ``folders``, checked to be one run's shards 1..N, in shard order."""
    if not folders:
        raise AuditError("give the part folders to merge, e.g. `audit merge parts/* --out OUT`")
    return in_shard_order([read_part(Path(folder)) for folder in folders])


def methods_of(parts: list[Part]) -> list[str]:
    return list(parts[0].document["options"]["methods"])


def merged_state(parts: list[Part]) -> Any:
    """The run states of ``parts`` (in shard order) merged into one."""
    from audit.metrics.run_state import RunState

    state = None
    for part in parts:
        loaded = RunState.load(part.folder)
        _check_images(loaded, part)
        if state is None:
            state = loaded
        else:
            state.merge(loaded)
    return state


def _check_images(state: Any, part: Part) -> None:
    """The state accounts for every image of its shard's range once: images read + skipped."""
    shard = part.document["shard"]
    seen = len(state.data.paths) + len(state.data.skipped)
    if seen != shard["stop"] - shard["start"]:
        raise AuditError(f"{part.folder}: its run state holds {seen} images, its shard {part.name} has "
                         f"{shard['stop'] - shard['start']}; rerun the shard that wrote {part.folder}")


def recorded_classifier(part: Part) -> Any:
    """The classifier the parts audited, loaded from its recorded path with the recorded input
    spec and class names; refuses a model file that changed since."""
    from audit.models.loader import ModelOptions, load_classifier

    options, model = part.document["options"], part.document["model"]
    spec = options["input"]
    path = Path(model["path"])
    if not path.exists():
        raise AuditError(f"{path}: the model the parts audited is not there any more; the latentshift strips need it: "
                         f"merge where {path} is readable")
    classifier = load_classifier(path, ModelOptions(
        input_size=(spec["height"], spec["width"]), channels=spec["channels"], mean=tuple(spec["mean"]),
        std=tuple(spec["std"]), value_range=tuple(spec["value_range"]), multilabel=options["multilabel"],
        class_names=tuple(options["classes"]),
    ))
    if classifier.sha256 != model["sha256"]:
        raise AuditError(f"{path}: changed since the parts were written (sha256 {classifier.sha256[:12]}…, the parts have "
                         f"{model['sha256'][:12]}…); rerun the shards with this model")
    return classifier


def merge_parts(parts: list[Part], out_dir: Path, command: str | None = None) -> dict[str, Any]:
    """Merge ``parts`` (``read_parts``) into ``out_dir`` (per_image.csv, maps, results.json); the
    results. ``command``: results.json's command when not the parts' own (``audit merge``'s)."""
    from audit.counterfactual.strips import latentshift_method
    from audit.pipeline import finish_run

    state = merged_state(parts)
    if command is not None:
        state.meta["config"]["command"] = command
    classifier = recorded_classifier(parts[0]) if latentshift_method(methods_of(parts)) else None
    return finish_run(state, out_dir, classifier)
