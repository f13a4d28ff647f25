"""``audit plugins``: what each registry holds and where it comes from."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table


def plugins() -> None:
    """List saliency methods, image readers and losses, built in or from installed plugins."""
    from audit.data.readers import readers
    from audit.finetune.losses import losses
    from audit.saliency import methods

    table = Table(title="audit plugins")
    for column in ("kind", "name", "entry-point group", "from"):
        table.add_column(column)
    for registry in (methods, readers, losses):
        for name in registry.names():
            table.add_row(registry.kind, name, registry.group, registry.origin(name))
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("plugins")(plugins)
