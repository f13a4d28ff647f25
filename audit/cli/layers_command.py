"""``audit layers MODEL``: the layer names to give ``-o grad-cam.layer``, ``--layers`` and the
randomisation check, with their output shapes, so a user can pick one."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from audit.cli.options import Channels, InputSize


def layers(
    model: Path = typer.Argument(..., help="TorchScript (.pt/.ts), torch.export (.pt2) or ONNX (.onnx) classifier."),
    input_size: InputSize = None,
    channels: Channels = None,
) -> None:
    """List the model's layers: name (the module path in your code), type, output shape for one
    image, own parameters, and what an exporter folded in; the default Grad-CAM layer is marked."""
    import torch

    from audit.errors import AuditError
    from audit.models.layer_names import LayerRow, exporter_notes, find_layer, layer_rows, named_layers
    from audit.models.loader import ModelOptions, load_classifier
    from audit.saliency.layers import feature_layer

    classifier = load_classifier(model, ModelOptions(input_size=input_size, channels=channels))
    try:
        network, unreachable = classifier.layered, ""
    except AuditError as exc:
        if classifier.format != "torchscript":
            raise
        network, unreachable = classifier.differentiable, str(exc)
    default, hooked = None, None
    if unreachable:  # the ScriptModule's own layers: gradient methods' randomisation uses them; no hooks
        rows = [LayerRow(name, getattr(module, "original_name", type(module).__name__), None,
                         sum(p.numel() for p in module.parameters(recurse=False)))
                for name, module in named_layers(network).items()]
    else:
        rows = layer_rows(network, torch.zeros((1, *classifier.spec.shape)), exporter_notes(network))
        try:
            default = feature_layer(classifier, None, "grad-cam").name
            hooked = find_layer(network, default, "grad-cam", model)
        except AuditError:
            pass
    modules = named_layers(network)
    lines = [("name", "type", "output", "parameters", "note")]
    for row in rows:
        shape = ("unknown" if unreachable else "not called") if row.shape is None else "×".join(map(str, row.shape)) or "-"
        mark = "" if modules[row.name] is not hooked else (
            "default Grad-CAM layer" if row.name == default else f"default Grad-CAM layer (the output of {default})")
        note = "; ".join(filter(None, [mark, row.note]))
        lines.append((row.name, row.kind, shape, f"{row.parameters:,}", note))
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"layers of {model} ({classifier.format}, input {'×'.join(map(str, classifier.spec.shape))}), "
                  f"named as -o grad-cam.layer=NAME, --layers NAME and the randomisation check take them")
    if unreachable:
        console.print(f"output shapes unknown and no layer usable by Grad-CAM, guided backprop or fine-tuning: "
                      f"{unreachable}", markup=False)
    for line in lines:
        console.print(("  ".join(cell.ljust(width) for cell, width in zip(line, widths)) + "  " + line[4]).rstrip(), markup=False)


def register(app: typer.Typer) -> None:
    app.command("layers")(layers)
