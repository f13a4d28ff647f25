"""stream_batches: worker processes give the pass an in-process read gives, errors stay one
line, read-ahead is bounded, and an early stop ends the workers."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from audit.data import loading
from audit.data.dataset import open_dataset
from audit.data.readers import PngReader
from audit.errors import AuditError
from tests.data.test_open_dataset import grey, png


class CountingReader(PngReader):
    """A PNG reader that appends one line per read (its process id) to ``log``: the reads of
    every process, visible from the test's."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def read(self, path: Path) -> np.ndarray:
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()}\n")
        return super().read(path)


def reads(log: Path) -> list[int]:
    return [int(line) for line in log.read_text().split()] if log.exists() else []


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    """11 images over two classes, one unreadable; masks: one resized, one unreadable, some missing."""
    root = tmp_path / "img"
    for i in range(11):
        png(root / ("a" if i % 2 else "b") / f"{i:02d}.png", grey(20 * i, 6))
    (root / "a" / "05.png").write_bytes(b"not a png")
    for i in (0, 2, 3, 8):
        mask = np.zeros((6, 6), np.uint8)
        mask[i % 6, :] = 1
        png(tmp_path / "masks" / ("a" if i % 2 else "b") / f"{i:02d}.png", mask)
    png(tmp_path / "masks" / "b" / "04.png", np.eye(3))  # another size: resized, counted
    (tmp_path / "masks" / "a" / "07.png").write_bytes(b"broken")  # unreadable mask
    region = np.zeros((6, 6), bool)
    region[2:4, 2:4] = True
    (tmp_path / "regions" / "b").mkdir(parents=True)
    np.save(tmp_path / "regions" / "b" / "10.npy", region)
    return tmp_path


def open_messy(root: Path, **options):
    return open_dataset(root / "img", size=(4, 4), channels=1, masks=root / "masks", regions=root / "regions", **options)


def run_pass(dataset, batch_size: int, workers: int):
    return list(loading.stream_batches(dataset, batch_size, workers=workers))


@pytest.mark.parametrize("batch_size", [2, 3])
def test_workers_give_the_batches_and_bookkeeping_of_an_in_process_read(messy: Path, batch_size: int):
    expected_ds, ds = open_messy(messy), open_messy(messy)
    expected = list(expected_ds.batches(batch_size))  # the dataset's own pass: the reference
    got = run_pass(ds, batch_size, workers=2)
    assert loading.workers_for(ds, batch_size, 2) == 2
    assert [b.paths for b in got] == [b.paths for b in expected]
    # one batch per window of batch_size listed images, shorter by the skipped a/05.png
    listed = [path for path, _ in ds.entries]
    sizes = [len(listed[start:start + batch_size]) for start in range(0, len(listed), batch_size)]
    sizes[listed.index('a/05.png') // batch_size] -= 1
    assert [len(b) for b in got] == sizes
    for mine, theirs in zip(got, expected):
        for name in ("labels", "images", "artefact", "region", "has_artefact", "has_region"):
            np.testing.assert_array_equal(getattr(mine, name), getattr(theirs, name))
    assert ds.skipped == expected_ds.skipped and [s.path for s in ds.skipped] == ["a/05.png"]
    assert ds.mask_report == expected_ds.mask_report
    report = ds.mask_report
    assert (report.with_artefact, report.with_region, report.resized) == (5, 1, 1)
    assert [Path(s.path).name for s in report.unreadable] == ["07.png"]
    run_pass(ds, batch_size, workers=2)  # a second pass reports the same, not twice as much
    assert ds.skipped == expected_ds.skipped and ds.mask_report == expected_ds.mask_report


def test_a_sliced_dataset_streams_its_slice(messy: Path):
    ds = open_messy(messy)
    part = replace(ds, entries=ds.entries[3:9])
    got = run_pass(part, 2, workers=2)
    assert [p for b in got for p in b.paths] == [escaped for escaped, _ in ds.entries[3:9] if not escaped.endswith("05.png")]


@pytest.mark.parametrize("workers", [0, 2])
def test_strict_error_from_a_worker_is_the_one_line_audit_error(messy: Path, workers: int):
    ds = open_messy(messy, strict=True)
    with pytest.raises(AuditError) as info:
        run_pass(ds, 2, workers=workers)
    message = str(info.value)
    assert "\n" not in message and "05.png: unreadable" in message and "without strict mode" in message
    assert "Traceback" not in message and "worker" not in message


def test_channel_count_error_from_a_worker(tmp_path: Path):
    for i in range(6):
        png(tmp_path / "img" / "x" / f"{i}.png", grey(9))
    png(tmp_path / "img" / "x" / "4.png", np.zeros((4, 4, 3)))
    ds = open_dataset(tmp_path / "img", size=(4, 4), channels=1)
    with pytest.raises(AuditError, match=r"4\.png: image has 3 channel\(s\) but the model takes 1") as info:
        run_pass(ds, 2, workers=2)
    assert "\n" not in str(info.value)


def test_all_skipped_is_the_error_of_an_in_process_pass(tmp_path: Path):
    for i in range(5):
        (tmp_path / "d" / "x").mkdir(parents=True, exist_ok=True)
        (tmp_path / "d" / "x" / f"{i}.png").write_bytes(b"junk")
    ds = open_dataset(tmp_path / "d", size=(4, 4), channels=1)
    with pytest.raises(AuditError) as reference:
        list(ds.batches(2))
    with pytest.raises(AuditError) as info:
        run_pass(ds, 2, workers=2)
    assert str(info.value) == str(reference.value) and "all 5 images were skipped" in str(info.value)


def counting(tmp_path: Path, images: int):
    for i in range(images):
        png(tmp_path / "img" / "x" / f"{i:03d}.png", grey(i))
    ds = open_dataset(tmp_path / "img", size=(4, 4), channels=1)
    log = tmp_path / "reads.log"
    return replace(ds, _readers={".png": CountingReader(log)}), log


def test_read_ahead_is_bounded_by_the_prefetch_depth(tmp_path: Path):
    ds, log = counting(tmp_path, 40)
    stream = loading.stream_batches(ds, 2, workers=2)
    first = next(stream)
    time.sleep(1.5)  # let the workers read as far ahead as they may
    done = len(reads(log))
    # chunks in flight: PREFETCH per worker, and one more asked for when the first came back
    assert len(first) == 2 and 2 * 2 <= done <= (2 * loading.PREFETCH + 1) * 2
    assert len(set(reads(log))) == 2 and os.getpid() not in reads(log)  # read by two other processes
    stream.close()


def test_an_early_stop_shuts_the_workers_down(tmp_path: Path):
    ds, log = counting(tmp_path, 40)
    started = time.perf_counter()
    with pytest.raises(RuntimeError, match="the model failed"):
        for _ in loading.stream_batches(ds, 2, workers=2):
            raise RuntimeError("the model failed")
    workers = set(reads(log))
    assert 1 <= len(workers) <= 2  # the second worker may not have read a chunk before the stop
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert time.perf_counter() - started < 5
    assert len(reads(log)) < 40


def test_workers_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    ds, _ = counting(tmp_path, 10)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert loading.default_workers() == 1
    assert loading.default_workers(model_on_gpu=False) == 0  # the model's threads keep the cores
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert loading.default_workers() == loading.MAX_WORKERS == 8
    assert loading.workers_for(ds, 2, None) == 4  # 5 chunks: at most one worker per chunk after the first
    assert loading.workers_for(ds, 10, 3) == 0  # one chunk: nothing to overlap, read in-process
    with pytest.raises(AuditError, match="--workers -1"):
        loading.workers_for(ds, 2, -1)


def test_an_explicit_worker_count_is_capped_at_the_cpu_count_said_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    """--workers 1000 on 60 images in batches of 1 started 59 processes; on a large dataset it
    would start 1000, each holding two batches."""
    ds, _ = counting(tmp_path, 60)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert loading.worker_limit() == 8
    assert [loading.workers_for(ds, 1, 1000) for _ in range(3)] == [8, 8, 8]
    assert loading.workers_for(ds, 1, 8) == 8 and loading.workers_for(ds, 30, 1000) == 1
    monkeypatch.setattr(os, "cpu_count", lambda: 32)
    assert loading.workers_for(ds, 1, 1000) == 32 and loading.workers_for(ds, 1, 20) == 20
    err = capsys.readouterr().err
    assert err.count("--workers 1000: using 8 worker processes") == 1 and err.count("using 32") == 1
