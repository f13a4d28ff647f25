"""The zoo's failure matrix as markdown: per architecture × export, OK, the exporter's failure,
the audit's failure (exit code and first error line) or the gradient mismatch.

Usage: OMP_NUM_THREADS=1 python -m tests.models.zoo.matrix [--only ARCH ...] > zoo_matrix.md
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from tests.models.zoo.architectures import ARCHITECTURES
from tests.models.zoo.checks import RELATIVE_TOLERANCE, audit_run, gradient_error, write_images
from tests.models.zoo.exports import EXPORTS, ExportFailed, exported


def first_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if "error" in line.lower()] or stderr.splitlines() or [""]
    return lines[0].replace("|", "/")[:240]


def cell(architecture: str, export: str, cache: Path, data: Path) -> str:
    try:
        path = exported(architecture, export, cache)
    except ExportFailed as exc:
        return f"exporter failed ({str(exc)[:200]})".replace("|", "/")
    code, err = audit_run(path, architecture, data, cache / f"out-{architecture}-{export}")
    verdicts = [] if code == 0 else [f"audit failed (exit {code}: {first_error(err)})"]
    try:
        error, scale = gradient_error(path, architecture)
    except Exception as exc:  # noqa: BLE001 (recorded, not raised)
        verdicts.append(f"gradient check failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})".replace("|", "/"))
    else:
        if not error <= RELATIVE_TOLERANCE * scale:
            verdicts.append(f"gradient mismatch ({error / scale:.1e} relative)")
    return "; ".join(verdicts) or "OK"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=list(ARCHITECTURES))
    parser.add_argument("--exports", nargs="*", default=list(EXPORTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        data = write_images(cache / "data")
        print("| architecture | export | result |\n|---|---|---|")
        for architecture in args.only:
            for export in args.exports:
                start = time.perf_counter()
                result = cell(architecture, export, cache, data)
                print(f"| {architecture} | {export} | {result} ({time.perf_counter() - start:.1f} s) |", flush=True)


if __name__ == "__main__":
    main()
