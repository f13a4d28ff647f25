"""``audit run --engine ray``: every shard a Ray task writing ``OUT/parts/I``, then the merge.

Each task runs ``audit.shards.run.run_part``, the function ``audit run --shard`` runs, in its
worker process, so a part written by Ray is the part the same shard run by hand writes. A task
asks for one GPU when the run uses CUDA (``--device cuda``, or ``auto`` on a cluster that has
GPUs) and one CPU otherwise, and runs torch with one thread per CPU it holds; with ``--workers``
unset a CPU task decodes in its own process (the default for a model on the CPU,
``audit.data.loading.default_workers``). Ray retries a task whose
worker died (killed, out of memory) up to ``RETRIES`` times; an ``AuditError`` in a task (bad
input) is not retried. A shard whose part folder already holds a finished part of the same run
(same model, options, listing and I/N) is skipped, so rerunning an interrupted run resumes.
When a shard fails, the others still finish (their parts are kept), then the first error is
raised.

``--address``: an existing cluster (``HOST:PORT`` of its head, ``auto``, or ``ray://HOST:PORT``
for Ray Client); without it a local cluster is started for the run and shut down after it. A
TCP connection to ``HOST:PORT`` is tried first, and ``ray.init`` runs in a thread: an address
that does not answer within ``CONNECT_TIMEOUT_S`` is a one-line error, not a hang (Ray's own
connect retries for minutes). The model, data and mask paths must be readable on every node.

Default ``--shards``: one per GPU of the cluster when the run uses CUDA, else one per CPU, at
most ``MAX_DEFAULT_SHARDS`` and at most one per image.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Iterator

from audit.errors import AuditError
from audit.shards import batch_count
from audit.shards.job import RunInputs
from audit.shards.part import read_part
from audit.shards.run import check_shard_count, run_identity, run_part

if TYPE_CHECKING:
    from audit.pipeline import RunConfig

CONNECT_TIMEOUT_S = 15.0
RETRIES = 3
CPUS_PER_TASK = 1
MAX_DEFAULT_SHARDS = 64
#: Test hook (not a flag): a marker file's path. The first task that creates it kills its own
#: worker process, so a test sees Ray retry a shard whose worker died.
CRASH_ONCE = "AUDIT_TEST_RAY_CRASH_ONCE"


def import_ray() -> ModuleType:
    try:
        import ray
    except ImportError as exc:
        raise AuditError("--engine ray: Ray is not installed; pip install 'audit[ray]' (or `make install`), "
                         "or run without --engine ray") from exc
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of ``HOST:PORT`` or ``ray://HOST:PORT``; None for ``auto`` and the like."""
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    return (host.strip("[]"), int(port)) if colon and host and port.isdigit() else None


def _probe(address: str, timeout: float) -> None:
    """Refuse at once an address where nothing listens (Ray would retry it for minutes)."""
    if (target := _host_port(address)) is None:
        return
    try:
        socket.create_connection(target, timeout=timeout).close()
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise AuditError(f"--address {address}: no Ray cluster answers there ({reason}, waited up to {timeout:.0f} s); "
                         f"start one with `ray start --head` or fix the address") from None


def _connect(ray: ModuleType, address: str, timeout: float) -> None:
    """``ray.init(address)`` within ``timeout`` seconds, in a daemon thread (it can hang)."""
    failure: list[BaseException] = []

    def connect() -> None:
        try:
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        except BaseException as exc:  # noqa: BLE001 (handed to the caller's thread)
            failure.append(exc)

    thread = threading.Thread(target=connect, name="ray-connect", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise AuditError(f"--address {address}: the Ray cluster did not answer within {timeout:.0f} s; check that its head "
                         f"runs (`ray status --address {address}`) and that this machine reaches it")
    if failure:
        raise AuditError(f"--address {address}: cannot connect to the Ray cluster ({str(failure[0]).splitlines()[0]}); "
                         f"fix the address or start one with `ray start --head`") from None


@contextmanager
def cluster(ray: ModuleType, address: str | None, timeout: float = CONNECT_TIMEOUT_S) -> Iterator[None]:
    """Connected to ``address`` (or a local cluster started here) for the block; disconnected
    after. A connection the caller already made (a test, a notebook) is used and kept."""
    if ray.is_initialized():
        yield
        return
    if address is None:
        ray.init(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    else:
        _probe(address, timeout)
        _connect(ray, address, timeout)
    try:
        yield
    finally:
        ray.shutdown()


def uses_gpus(device: str, resources: dict[str, float]) -> bool:
    """Whether the tasks ask for a GPU: ``cuda``/``cuda:N``, or ``auto`` on a cluster with GPUs."""
    gpus = resources.get("GPU", 0)
    if device.startswith("cuda") and gpus < 1:
        raise AuditError(f"--device {device}: the Ray cluster has no GPU; use --device cpu or a cluster with GPUs")
    return device.startswith("cuda") or (device == "auto" and gpus >= 1)


def default_shards(resources: dict[str, float], gpus: bool, batches: int) -> int:
    """One shard per GPU (``gpus``) or CPU of the cluster, at most MAX_DEFAULT_SHARDS and the
    pass's ``batches`` (shards are cut at batch boundaries)."""
    slots = int(resources.get("GPU" if gpus else "CPU", 1))
    return max(1, min(slots, MAX_DEFAULT_SHARDS, batches))


def _finished(folder: Path, run: dict[str, Any], index: int, count: int) -> bool:
    """Whether ``folder`` holds a finished part of shard ``index``/``count`` of this run."""
    try:
        return read_part(folder).matches(run, index, count)
    except AuditError:
        return False


def _shard_task(inputs: RunInputs, config: RunConfig, out: str, threads: int, crash_marker: str | None) -> int:
    """A Ray task: run one shard into ``out`` with ``threads`` torch threads; its image count."""
    import torch

    torch.set_num_threads(threads)
    if crash_marker:
        try:
            os.close(os.open(crash_marker, os.O_CREAT | os.O_EXCL))
            os._exit(1)  # the test hook: the first task to create the marker kills its worker
        except FileExistsError:
            pass
    from audit.device import check_precision, parse_device

    device = parse_device(config.device)  # on this node: the GPU Ray gave the task is its cuda:0
    check_precision(config.precision, device)
    inputs = replace(inputs, options=replace(inputs.options, device=device))
    document = run_part(inputs, replace(config, device=str(device)), Path(out))
    return document["shard"]["stop"] - document["shard"]["start"]


def _failure(ray: ModuleType, exc: BaseException, name: str, folder: Path) -> AuditError:
    """A failed task as one line: its own AuditError, or its worker's repeated death."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, AuditError):
        return AuditError(f"shard {name}: {cause}")
    if isinstance(exc, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)):
        return AuditError(f"shard {name}: its worker died {RETRIES + 1} times ({type(exc).__name__}); see the Ray logs, "
                          f"then rerun to resume from the finished parts (this one goes to {folder})")
    raise exc


def absolute_options(options: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Method options with an ``autoencoder`` file (the latentshift methods) by its absolute path."""
    return {name: {key: str(Path(value).absolute()) if key == "autoencoder" else value for key, value in given.items()}
            for name, given in options.items()}


def run_on_ray(inputs: RunInputs, config: RunConfig, parts: Path, shards: int | None, address: str | None,
               echo: Callable[[str], None]) -> list[Path]:
    """Run the shards of the audit as Ray tasks into ``parts/I``; the part folders, in order.
    Every path goes to the tasks absolute: a worker on another node starts in another folder."""
    ray = import_ray()
    inputs, parts = inputs.absolute(), parts.absolute()
    config = replace(config, method_options=absolute_options(config.method_options))
    run, _, dataset = run_identity(inputs, config)  # bad inputs fail here, before any cluster work
    with cluster(ray, address):
        resources = ray.cluster_resources()
        gpus = uses_gpus(config.device, resources)
        count = shards or default_shards(resources, gpus, batch_count(len(dataset), config.batch_size))
        check_shard_count(len(dataset), count, config.batch_size, f"--shards {count}")
        folders = [parts / str(i) for i in range(1, count + 1)]
        pending = [i for i in range(1, count + 1) if not _finished(folders[i - 1], run, i, count)]
        if len(pending) < count:
            echo(f"resuming: {count - len(pending)} of {count} shards already finished in {parts}")
        task = ray.remote(_shard_task).options(num_cpus=CPUS_PER_TASK, num_gpus=1 if gpus else 0, max_retries=RETRIES)
        marker = os.environ.get(CRASH_ONCE)
        refs = {task.remote(inputs, replace(config, shard=(i, count)), str(folders[i - 1]), CPUS_PER_TASK, marker): i
                for i in pending}
        errors: list[AuditError] = []
        while refs:
            (done,), _ = ray.wait(list(refs), num_returns=1)
            index = refs.pop(done)
            try:
                images = ray.get(done)
            except ray.exceptions.RayError as exc:
                errors.append(_failure(ray, exc, f"{index}/{count}", folders[index - 1]))
                continue
            echo(f"shard {index}/{count} finished: {images} images in {folders[index - 1]}")
        if errors:
            raise errors[0]
    return folders
