"""``audit methods [NAME ...]``: every saliency method with its options (type, default, meaning),
what it needs of the model, and where it comes from; ``--json`` for scripts."""

from __future__ import annotations

import inspect
import json
import sys
from typing import Any, Optional

import typer
from rich.console import Console
from rich.text import Text

from audit.errors import AuditError


def describe(name: str) -> dict[str, Any]:
    """One method as ``audit methods --json`` prints it."""
    from audit.saliency import methods
    from audit.saliency.options import method_options

    cls = methods.get(name)
    needs = [what for what, flag in (("forward passes only", cls.forward_only), ("a layer", cls.needs_layer),
                                     ("layer hooks", cls.needs_hooks)) if flag] or ["gradients"]
    first_paragraph = (inspect.getdoc(cls) or "").split("\n\n")[0]
    return {"name": name, "from": methods.origin(name), "signed": cls.signed, "needs": needs,
            "summary": " ".join(first_paragraph.split()), "options": [o.to_json() for o in method_options(cls)]}


def list_methods(
    names: Optional[list[str]] = typer.Argument(None, help="Methods to describe (default: all)."),
    json_out: bool = typer.Option(False, "--json", help="Print the list as JSON."),
) -> None:
    """List every saliency method with its options (-o METHOD.KEY=VALUE): type, default, meaning."""
    from audit.saliency import methods

    chosen = names or methods.names()
    unknown = [name for name in chosen if name not in methods.names()]
    if unknown:
        raise AuditError(f"audit methods {unknown[0]}: no such method; known: {', '.join(methods.names())}")
    described = [describe(name) for name in chosen]
    if json_out:
        sys.stdout.write(json.dumps(described, indent=2, default=str) + "\n")
        return
    console = Console(highlight=False, soft_wrap=True)  # names and options whole, at any width
    for method in described:
        console.print(Text.assemble((method["name"], "bold"), f"  ({method['from']}; {', '.join(method['needs'])}"
                                    f"{'; signed' if method['signed'] else ''})"))
        if method["summary"]:
            console.print(f"    {method['summary']}", markup=False)
        for option in method["options"]:
            console.print(f"    -o {method['name']}.{option['name']}=…  {option['type']}, default {option['default']!r}: "
                          f"{option['meaning']}", markup=False)
        if not method["options"]:
            console.print("    (no options)")


def register(app: typer.Typer) -> None:
    app.command("methods")(list_methods)
