"""One output folder, one run: a lock, a staging folder, and a set published together.

Every command that writes a folder (``audit run``, ``audit counterfactual``, ``audit finetune``)
does it through ``OutputFolder``:

1. **Lock.** ``OUT/.lock`` is held with ``flock`` for the whole command (the kernel drops it
   when the process dies, even by ``kill -9``); it holds the owner's process id. A second
   command into the same folder fails at once, naming that process.
2. **Stage.** Every output is written under ``OUT/.partial/<run id>/``, never in place, so a
   failed or killed run leaves the previous complete set untouched. Its partial files (rows
   already computed) stay there; nothing ever deletes another run's staging folder.
3. **Publish.** The index file (``results.json``, ``summary.json``) gets ``run = {"id",
   "outputs": {relative path: sha256}}`` naming every other file of the set. The files are
   renamed into OUT, the index last, then the outputs the previous index listed and the new one
   does not are removed.

A reader (``read_results``) refuses a folder whose files do not match its index's hashes:
that is a folder where a run was killed while publishing, or whose files someone replaced.
Every path, ours or from a manifest, must resolve inside OUT (``inside``).
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import secrets
import shutil
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, Callable, Iterable

from audit.errors import AuditError
from audit.models.files import sha256_of

LOCK = ".lock"
STAGING = ".partial"

#: Write failures that are the output folder's fault (disk full, read-only, quota, file size
#: limit, name too long): a one-line error naming OUT, not an internal error.
OUTPUT_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG, errno.ENAMETOOLONG, errno.EACCES, errno.EPERM}


def safe_relative(name: str | Path) -> PurePosixPath | None:
    """``name`` as a relative POSIX path with no ``..``, ``.`` or empty part, or None when it is
    absolute or climbs out (``../a.png``, ``/etc/x``, ``C:\\x``)."""
    text = str(name).replace("\\", "/")
    path = PurePosixPath(text)
    if path.is_absolute() or not path.parts or ":" in path.parts[0]:
        return None
    if any(part in ("..", ".", "") for part in path.parts):
        return None
    return path


def inside(root: Path, path: Path) -> bool:
    """Whether ``path`` resolves (symlinks followed) inside ``root``."""
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def input_at(path: Path, inputs: Iterable[Path]) -> Path | None:
    """The input that ``path`` is, or lies inside (a data folder), symlinks resolved; else None."""
    resolved = path.resolve()
    for given in inputs:
        source = given.resolve()
        if resolved == source or source in resolved.parents:
            return given
    return None


def check_output_file(target: Path, flag: str, default: str, inputs: Iterable[Path]) -> None:
    """Refuse, before any work, an output file chosen on the command line (``--report``,
    ``--junit``, ``audit report -o``, ``audit compare --pdf``) that is a folder, lies below a
    file, or would overwrite an input."""
    if target.is_dir():
        raise AuditError(f"{flag} {target}: is a folder; give a file path, e.g. {target / default}")
    for parent in target.parents:
        if parent.exists() and not parent.is_dir():
            raise AuditError(f"{flag} {target}: lies below the file {parent}; give another path")
    if (source := input_at(target, inputs)) is not None:
        raise AuditError(f"{flag} {target}: would overwrite the input {source}; choose another path")


def outputs_of(document: Any) -> dict[str, str]:
    """An index's ``run.outputs`` (relative path → sha256), safe relative paths only; {} when it has none."""
    run = document.get("run") if isinstance(document, dict) else None
    outputs = run.get("outputs") if isinstance(run, dict) else None
    if not isinstance(outputs, dict):
        return {}
    return {str(k): str(v) for k, v in outputs.items() if safe_relative(k) is not None}


def run_files(results: dict[str, Any], path: Path) -> list[Path]:
    """A results.json at ``path`` and every file beside it that its ``run.outputs`` lists."""
    return [path, *(path.parent / name for name in outputs_of(results))]


def new_run_id() -> str:
    """UTC time, process id and 32 random bits: unique across machines sharing a folder."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{os.getpid()}-{secrets.token_hex(4)}"


def output_error(root: Path, exc: OSError, kept: Path | None = None) -> AuditError:
    where = f"; rows and maps computed so far are in {kept}" if kept is not None and kept.exists() else ""
    return AuditError(f"{root}: cannot write the outputs ({exc.strerror or exc}); free space or choose another --out{where}")


def check_out_folder(root: Path) -> bool:
    """Refuse an ``--out`` that cannot be a folder, before any work: a file, a path below a
    file, a name too long, a folder we may not write. Creates it; True when it did not exist."""
    try:
        created = not root.exists()
        for parent in [root, *root.parents]:
            if parent.exists() and not parent.is_dir():
                what = "is a file" if parent == root else f"lies below the file {parent}"
                raise AuditError(f"--out {root}: {what}; give a folder path")
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AuditError(f"--out {root}: cannot create the folder ({exc.strerror or exc}); give a shorter or writable path") from exc
    return created


#: staging folders left by a Ctrl-C in this process, for the interruption message (``audit.cli.main``)
INTERRUPTED: list[Path] = []

class OutputFolder:
    """``with OutputFolder(out, "results.json") as folder:`` write to ``folder.staged(...)``,
    then ``folder.publish(document)``. See the module docstring."""

    def __init__(self, root: Path, index: str, reserved: tuple[str, ...] = (), inputs: tuple[Path | None, ...] = ()) -> None:
        self.root = Path(root)
        self.index = index
        self.reserved = (index, LOCK, STAGING, *reserved)
        self.inputs = [Path(p) for p in inputs if p is not None]
        self._protected: set[Path] = set()
        self.run_id = new_run_id()
        self.staging = self.root / STAGING / self.run_id
        self._lock: int | None = None

    # --- lifetime -------------------------------------------------------------------------
    def __enter__(self) -> OutputFolder:
        self._created = check_out_folder(self.root)
        self._check_inputs()
        if (self.root / STAGING).is_symlink():
            raise AuditError(f"{self.root / STAGING}: is a link; remove it (audit stages its outputs there)")
        self._take_lock()
        try:
            self.staging.mkdir(parents=True)
        except OSError as exc:
            self._release()
            raise output_error(self.root, exc) from exc
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._release()
        if exc is None:
            return
        if not any(p.is_file() for p in self.staging.rglob("*")):
            shutil.rmtree(self.staging, ignore_errors=True)
            _remove_if_empty(self.root / STAGING)
            if self._created and [p.name for p in self.root.iterdir()] == [LOCK]:
                shutil.rmtree(self.root)  # a folder this command created and wrote nothing to
        if isinstance(exc, OSError) and exc.errno in OUTPUT_ERRNOS:
            raise output_error(self.root, exc, self.staging) from exc
        if isinstance(exc, AuditError) and self.staging.exists():
            raise AuditError(f"{exc}; the outputs computed so far are in {self.staging}") from exc
        if isinstance(exc, KeyboardInterrupt) and self.staging.exists():
            INTERRUPTED.append(self.staging)  # the command line names it (click swallows the exception)

    def _check_inputs(self) -> None:
        """Refuse, before any work, an OUT that is an input folder or lies inside one (the next
        run would read the outputs as data), and an input that lies where an output goes."""
        root = self.root.resolve()
        for given in self.inputs:
            path = given.resolve()
            if path.is_dir() and (root == path or path in root.parents):
                raise AuditError(f"--out {self.root}: is or lies inside the input folder {given}; the outputs would be read "
                                 f"as inputs next time: choose a folder outside it")
            if path.is_relative_to(root) and path != root and path.relative_to(root).parts[0] in self.reserved:
                raise AuditError(f"{given}: an input lies where this run writes its outputs in {self.root}; move it or choose another --out")

    def protect(self, files: Iterable[Path]) -> None:
        """Add input files (e.g. a manifest's images, which may lie anywhere) that no output may replace."""
        self._protected.update(f.resolve() for f in files)

    def _is_input(self, path: Path) -> Path | None:
        """The input that ``path`` is, or lies inside, if any."""
        return path if path.resolve() in self._protected else input_at(path, self.inputs)

    def published(self, path: Path) -> Path:
        """Where a staged file lies once the set is published (other paths are unchanged)."""
        try:
            return self.root / path.relative_to(self.staging)
        except ValueError:
            return path

    def _take_lock(self) -> None:
        path = self.root / LOCK
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise output_error(self.root, exc) from exc
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(descriptor, 64).decode("ascii", "replace").strip() or "unknown"
            os.close(descriptor)
            raise AuditError(
                f"{self.root}: another audit (process {owner}) is writing this folder; wait for it to end or choose another --out"
            ) from None
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        self._lock = descriptor

    def _release(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            os.close(self._lock)
            self._lock = None

    # --- paths ----------------------------------------------------------------------------
    def staged(self, relative: str | Path) -> Path:
        """Where output ``relative`` (e.g. ``maps/gradient.npz``) is written during the run."""
        safe = safe_relative(relative)
        if safe is None:
            raise AuditError(f"{relative}: an output path must stay inside {self.root}")
        path = self.staging / safe
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def destination(self, user_path: Path | None, default: str, flag: str) -> Path:
        """Where a user-chosen output (``--report``, ``--junit``) goes: staged when it lies in
        OUT (published with the set), else the path itself. Refuses a path that is another
        output of this run, a folder, or below a file."""
        if user_path is None:
            return self.staged(default)
        check_output_file(user_path, flag, default, self.inputs)
        try:
            relative = user_path.resolve().relative_to(self.root.resolve())
        except ValueError:
            return user_path
        if relative.parts and relative.parts[0] in self.reserved:
            raise AuditError(f"{flag} {user_path}: would overwrite this run's {relative.parts[0]}; choose another path")
        return self.staged(relative)

    def carry_over(self, folder: str) -> int:
        """Copy into staging the files of ``folder`` (e.g. ``checkpoints``) from the published
        set and from interrupted runs' staging folders, the newest copy of each name, so a
        command can resume; the originals stay. Returns how many files were copied."""
        sources = [self.root / folder, *sorted((self.root / STAGING).glob(f"*/{folder}"))]
        newest: dict[str, Path] = {}
        for source in sources:
            if source.is_symlink() or not source.is_dir() or source == self.staging / folder:
                continue
            for path in source.iterdir():
                if path.is_file() and not path.is_symlink() and not path.name.endswith(".tmp"):
                    if path.name not in newest or path.stat().st_mtime > newest[path.name].stat().st_mtime:
                        newest[path.name] = path
        for name, path in newest.items():
            shutil.copy2(path, self.staged(f"{folder}/{name}"))
        return len(newest)

    def _check_target(self, target: Path) -> None:
        """An output may only replace a regular file of ours inside OUT: not through a link that
        leads outside, not over a folder, not over an input."""
        links = [p for p in [target, *target.parents] if p.is_symlink() and self.root in p.parents]
        if links or not inside(self.root, target):
            where = links[-1] if links else target
            raise AuditError(f"{where}: a link in {self.root} where outputs go; remove the link (outputs kept in {self.staging})")
        if target.is_dir() and not target.is_symlink():
            raise AuditError(f"{target}: is a folder where an output goes; remove it (outputs kept in {self.staging})")
        if (source := self._is_input(target)) is not None:
            raise AuditError(f"{target}: would overwrite the input {source}; choose another --out (outputs kept in {self.staging})")

    # --- publishing -----------------------------------------------------------------------
    def publish(self, document: dict[str, Any], write: Callable[[dict[str, Any], Path], Any]) -> dict[str, Any]:
        """Record the staged files' hashes in ``document["run"]`` (beside what the command put
        there: ``audit.device.describe``), write it with ``write`` as the index, and move the set
        into OUT (index last). Returns the document."""
        index = self.staging / self.index
        files = sorted(p for p in self.staging.rglob("*") if p.is_file() and p != index and not p.name.endswith(".tmp"))
        outputs = {p.relative_to(self.staging).as_posix(): sha256_of(p) for p in files}
        document["run"] = {**document.get("run", {}), "id": self.run_id, "outputs": outputs}
        write(document, index)
        previous = listed_outputs(self.root, self.index)
        for relative in [*outputs, self.index]:  # every target checked before anything moves
            self._check_target(self.root / relative)
        for relative in outputs:
            target = self.root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.staging / relative, target)
        os.replace(index, self.root / self.index)
        for relative, digest in previous.items():  # only files we wrote: the hash the old index recorded
            stale = self.root / relative
            if relative not in outputs and stale.is_file() and not stale.is_symlink() and inside(self.root, stale) \
                    and self._is_input(stale) is None and sha256_of(stale) == digest:
                stale.unlink()
        shutil.rmtree(self.staging, ignore_errors=True)
        _remove_if_empty(self.root / STAGING)
        return document


def replace_output(root: Path, index: str, relative: str, write: Callable[[Path], Any],
                   write_index: Callable[[dict[str, Any], Path], Any]) -> Path:
    """Rewrite one output of a published set (``audit report`` renders report.pdf again) under
    the folder's lock, and record its new hash in the index, so the set stays consistent."""
    with OutputFolder(root, index) as folder:
        staged = folder.staged(relative)
        write(staged)
        document = json.loads((folder.root / index).read_text(encoding="utf-8"))
        run = document.get("run")
        if isinstance(run, dict) and isinstance(run.get("outputs"), dict):
            run["outputs"][relative] = sha256_of(staged)
        write_index(document, folder.staging / index)
        os.replace(staged, folder.root / relative)
        os.replace(folder.staging / index, folder.root / index)
        shutil.rmtree(folder.staging, ignore_errors=True)
        _remove_if_empty(folder.root / STAGING)
    return root / relative


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def listed_outputs(root: Path, index: str) -> dict[str, str]:
    """The outputs the index in ``root`` names (only safe relative paths), or {} without one."""
    try:
        return outputs_of(json.loads((root / index).read_text(encoding="utf-8")))
    except (OSError, ValueError, RecursionError):
        return {}


def verify_outputs(root: Path, document: dict[str, Any], index: Path) -> None:
    """Refuse a folder whose files are not the ones ``document`` (its index) names: a run killed
    while publishing, or files replaced by hand. Files absent are not checked (a results.json
    copied alone is fine); a file present with another hash is."""
    run = document.get("run")
    if run is None or isinstance(run, dict) and "outputs" not in run:
        return  # never published (written by ``run_audit`` itself: only the device it ran on)
    outputs = run.get("outputs") if isinstance(run, dict) else None
    if not isinstance(outputs, dict):
        raise AuditError(f"{index}: its run record is malformed; rerun the command that wrote it")
    for relative, digest in outputs.items():
        safe = safe_relative(relative)
        if safe is None:
            raise AuditError(f"{index}: lists the output {relative!r} outside its folder; rerun the command that wrote it")
        path = root / safe
        if path.is_file() and inside(root, path) and sha256_of(path) != digest:
            raise AuditError(
                f"{path}: does not belong to the run of {index} (run {run.get('id')}): the folder mixes two runs; "
                f"rerun into an empty --out"
            )
