"""``audit plugins``: what each registry holds and where it comes from, and which plugins are not used."""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text


def plugins(json_out: bool = typer.Option(False, "--json", help="Print the registries as JSON.")) -> None:
    """List saliency methods, image readers and losses, built in or from installed plugins; then,
    one line each, the plugins that failed to load or whose name is taken."""
    from audit.data.readers import readers
    from audit.finetune.losses import losses
    from audit.saliency import methods

    if json_out:
        listing = [{"group": r.group, "name": name, "from": r.origin(name)} for r in (methods, readers, losses) for name in r.names()]
        unloaded = [{"group": r.group, "name": e.name, "value": e.value, "package": e.package, "failed": e.failed,
                     "reason": e.reason} for r in (methods, readers, losses) for e in r.unloaded()]
        sys.stdout.write(json.dumps({"registered": listing, "not_loaded": unloaded}, indent=2) + "\n")
        return
    console = Console(highlight=False, soft_wrap=True)
    table = Table(title="audit plugins")
    for column in ("entry-point group", "name", "from"):
        table.add_column(column, no_wrap=True)
    for registry in (methods, readers, losses):
        for name in registry.names():
            table.add_row(registry.group, name, registry.origin(name))
    console.print(table)
    for registry in (methods, readers, losses):
        for entry in registry.unloaded():
            status = Text("failed to load", style="bold red") if entry.failed else Text("not used", style="yellow")
            console.print(Text.assemble(status, f": {registry.group} {entry.name!r} ({entry.value}) from {entry.package}: {entry.reason}"))


def register(app: typer.Typer) -> None:
    app.command("plugins")(plugins)
