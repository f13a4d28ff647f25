"""``audit make-synthetic``: the crosses-and-distractor dataset of Viviano et al."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from audit.cli.options import Seed


def make_synthetic_command(
    out: Path = typer.Argument(..., help="Output folder: {train,valid,test}/{images,artefacts,regions}/<class>/*.png"),
    seed: Seed = 0,
    box: str = typer.Option("biased", "--box", help="biased: box side tells the class (flipped in valid/test); random: it does not."),
    n_train: int = typer.Option(500, "--n-train", min=2),
    n_valid: int = typer.Option(128, "--n-valid", min=2),
    n_test: int = typer.Option(128, "--n-test", min=2),
) -> None:
    """Write the synthetic dataset with region masks (crosses) and artefact masks (the box)."""
    from audit.data.synthetic import make_synthetic
    from audit.errors import AuditError

    if box not in ("biased", "random"):
        raise AuditError(f"--box {box!r}: use biased or random")
    root = make_synthetic(out, seed=seed, n_train=n_train, n_valid=n_valid, n_test=n_test, box=box)
    Console(stderr=True).print(f"wrote {n_train + n_valid + n_test} images with masks to {root}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("make-synthetic")(make_synthetic_command)
