"""``audit run --engine ray`` on a local Ray cluster that the tests start (2 CPUs): the merged
shards equal the unsharded run, a shard whose worker dies is retried, a rerun resumes from the
finished parts, and Ray missing or a dead address is a one-line error."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
import torch

from audit.cli.main import main
from audit.shards.ray_engine import CRASH_ONCE
from tests.cli.test_shards import MODELS, assert_same_run, run_args
from tests.conftest import assert_one_line_error

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def whole(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ray") / "whole"
    assert main([str(a) for a in run_args(synthetic_root / "valid", MODELS / "biased.onnx", "--out", out)]) == 0
    return out


def ray_args(synthetic_root: Path, out: Path, *extra) -> list[str]:
    args = [a for a in run_args(synthetic_root / "valid") if a != "--quiet"]
    return [str(a) for a in [*args, "--engine", "ray", "--shards", "2", "--out", out, *extra]]


def test_two_ray_shards_equal_the_unsharded_run(local_cluster, whole, synthetic_root, tmp_path, capfd) -> None:
    out = tmp_path / "out"
    assert main(ray_args(synthetic_root, out)) == 0
    err = capfd.readouterr().err
    # 24 images in batches of 5: 5 batches, 3 + 2, cut at batch boundaries
    assert "shard 1/2 finished: 15 images" in err and "shard 2/2 finished: 9 images" in err, err
    assert_same_run(out, whole)
    assert [json.loads((out / "parts" / str(i) / "part.json").read_text())["shard"]["index"] for i in (1, 2)] == [1, 2]


def test_a_shard_whose_worker_died_is_retried(local_cluster, whole, synthetic_root, tmp_path, monkeypatch) -> None:
    marker = tmp_path / "crashed"
    monkeypatch.setenv(CRASH_ONCE, str(marker))
    out = tmp_path / "out"
    assert main(ray_args(synthetic_root, out, "--quiet")) == 0
    assert marker.exists()  # one worker did die (os._exit) before Ray retried its shard
    assert_same_run(out, whole)


def test_a_rerun_resumes_from_the_finished_parts(local_cluster, whole, synthetic_root, tmp_path, capfd) -> None:
    out = tmp_path / "out"
    first = out / "parts" / "1"
    by_hand = [str(a) for a in run_args(synthetic_root / "valid", MODELS / "biased.onnx", "--shard", "1/2", "--out", first)]
    assert main(by_hand) == 0  # what an interrupted run leaves: shard 1 finished, shard 2 not
    written = {name: (first / name).stat().st_mtime_ns for name in ("part.json", "state.npz", "per_image.partial.csv")}
    time.sleep(0.01)
    assert main(ray_args(synthetic_root, out)) == 0
    err = capfd.readouterr().err
    assert "resuming: 1 of 2 shards already finished" in err and "shard 1/2 finished" not in err, err
    assert {name: (first / name).stat().st_mtime_ns for name in written} == written
    assert_same_run(out, whole)


def audit_process(args: list[str], prelude: str = "") -> subprocess.CompletedProcess:
    """``audit ARGS`` in a fresh interpreter (no Ray connection of this process), after ``prelude``."""
    code = f"import sys\n{prelude}\nfrom audit.cli.main import main\nsys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, env=env)


def test_ray_not_installed_is_a_one_line_error(synthetic_root, tmp_path) -> None:
    done = audit_process(ray_args(synthetic_root, tmp_path / "out"), prelude="sys.modules['ray'] = None")
    assert_one_line_error(done.returncode, done.stderr, "Ray is not installed", "pip install 'audit[ray]'")


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_dead_address_is_a_one_line_error(synthetic_root, tmp_path) -> None:
    address = f"127.0.0.1:{unused_port()}"
    started = time.monotonic()
    done = audit_process(ray_args(synthetic_root, tmp_path / "out", "--address", address))
    assert time.monotonic() - started < 60
    assert_one_line_error(done.returncode, done.stderr, f"--address {address}", "no Ray cluster answers there")


def test_an_address_that_never_answers_times_out(tmp_path) -> None:
    """Something listens but is no Ray head: ``ray.init`` would wait for minutes; we stop at the timeout."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        address = f"127.0.0.1:{server.getsockname()[1]}"
        code = ("import ray\nfrom audit.shards.ray_engine import cluster\n"
                f"with cluster(ray, {address!r}, timeout=2):\n    pass")
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    assert time.monotonic() - started < 60
    assert done.returncode != 0
    assert f"AuditError: --address {address}: the Ray cluster did not answer within 2 s" in done.stderr, done.stderr


@pytest.mark.parametrize(("extra", "words"), [
    (["--device", "cuda"], ["--device cuda"]),  # the test cluster has 2 CPUs and no GPU
    (["--shards", "30"], ["--shards 30", "30 shards of 24 images"]),
])
def test_a_ray_run_the_cluster_cannot_do_is_a_one_line_error(extra, words, local_cluster, synthetic_root, tmp_path, capsys) -> None:
    code = main([*ray_args(synthetic_root, tmp_path / "out"), *extra])
    assert_one_line_error(code, capsys.readouterr().err, *words)
    assert not (tmp_path / "out" / "parts").exists()


def test_tasks_get_absolute_paths(tmp_path, monkeypatch) -> None:
    """A worker on another node starts in another folder: relative paths would miss there."""
    from audit.shards.job import RunInputs
    from audit.shards.ray_engine import absolute_options

    monkeypatch.chdir(tmp_path)
    given = RunInputs(Path("m.onnx"), Path("data"), masks=Path("masks"), autoencoder=Path("ae.pt")).absolute()
    assert (given.model, given.data, given.masks, given.regions, given.autoencoder) == \
        (tmp_path / "m.onnx", tmp_path / "data", tmp_path / "masks", None, tmp_path / "ae.pt")
    options = absolute_options({"latentshift-max": {"autoencoder": "ae.pt", "frames": 5}, "gradient": {}})
    assert options == {"latentshift-max": {"autoencoder": str(tmp_path / "ae.pt"), "frames": 5}, "gradient": {}}
