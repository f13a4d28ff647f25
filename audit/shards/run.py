"""Running one shard into its part folder: the function ``audit run --shard`` and a Ray task share."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from audit.errors import AuditError
from audit.progress import SILENT, Phases
from audit.shards import batch_count
from audit.shards.job import RunInputs
from audit.shards.part import MANIFEST, PART_OUTPUTS, identity, manifest, write_manifest

if TYPE_CHECKING:
    from audit.pipeline import RunConfig


def check_shard_count(images: int, count: int, batch: int, flag: str) -> None:
    """Every shard must hold a batch: ``count`` ≤ the listing's ⌈images / batch⌉ batches."""
    batches = batch_count(images, batch)
    if count > batches:
        raise AuditError(f"{flag}: {count} shards of {images} images in {batches} batch(es) of {batch} leave some empty "
                         f"(shards are cut at batch boundaries); use at most {batches} shards, or a smaller --batch-size")


def run_identity(inputs: RunInputs, config: RunConfig) -> tuple[dict[str, Any], Any, Any]:
    """(identity, classifier, dataset) of the run ``inputs`` and ``config`` describe."""
    classifier, dataset = inputs.open()
    run = identity(classifier, dataset, inputs.masks is not None, inputs.regions is not None, config)
    return run, classifier, dataset


def run_part(inputs: RunInputs, config: RunConfig, out: Path, phases: Phases = SILENT) -> dict[str, Any]:
    """Audit shard ``config.shard`` = (I, N) of the dataset into the part folder ``out``
    (``audit.shards.part``): its rows and run state staged, part.json published last. Returns
    part.json's content."""
    from audit.pipeline import stream_run
    from audit.report.output_folder import OutputFolder

    index, count = config.shard
    with OutputFolder(out, MANIFEST, reserved=PART_OUTPUTS, inputs=inputs.paths()) as folder:
        run, classifier, dataset = run_identity(inputs, config)
        folder.protect(dataset.base / relative for relative, _ in dataset.entries)
        check_shard_count(len(dataset), count, config.batch_size, f"--shard {index}/{count}")
        state = stream_run(classifier, dataset, config, folder.staging, phases)
        state.save(folder.staging)
        document = manifest(run, index, count, inputs.model.absolute(), str(classifier.device), config.command)
        folder.publish(document, write_manifest)
    return document
