"""Parsing of the command line's small value languages (lists, method options)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Optional

import typer

from audit.errors import AuditError

# The model-input flags shared by every command that loads a classifier.
InputSize = Annotated[Optional[tuple[int, int]], typer.Option("--input-size", help="H W, when the model does not declare it.")]
Channels = Annotated[Optional[int], typer.Option("--channels", help="Input channels, when the model does not declare them.")]
Mean = Annotated[str, typer.Option("--mean", help="Per-channel mean subtracted after scaling (comma-separated).")]
Std = Annotated[str, typer.Option("--std", help="Per-channel std divided after scaling (comma-separated).")]
ValueRange = Annotated[str, typer.Option("--value-range", help="Pixel range the model expects before mean/std, e.g. 0,255.")]
Multilabel = Annotated[bool, typer.Option("--multilabel", help="Sigmoid per output instead of softmax.")]


def float_list(text: str, flag: str) -> tuple[float, ...]:
    """'0.485,0.456,0.406' → (0.485, 0.456, 0.406)."""
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise AuditError(f"{flag} {text!r}: give comma-separated numbers, e.g. {flag} 0.5,0.5,0.5") from exc
    if not values:
        raise AuditError(f"{flag} is empty; give comma-separated numbers")
    return values


def value_range(text: str) -> tuple[float, float]:
    values = float_list(text, "--value-range")
    if len(values) != 2 or values[0] >= values[1]:
        raise AuditError(f"--value-range {text!r}: give LOW,HIGH with LOW < HIGH, e.g. 0,255")
    return values[0], values[1]


def _scalar(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def method_options(items: list[str], chosen: list[str]) -> dict[str, dict[str, Any]]:
    """['integrated-gradients.n_steps=32'] → {'integrated-gradients': {'n_steps': 32}}."""
    options: dict[str, dict[str, Any]] = {}
    for item in items:
        name, dot, rest = item.partition(".")
        key, equals, value = rest.partition("=")
        if not dot or not equals or not key:
            raise AuditError(f"--option {item!r}: write METHOD.KEY=VALUE, e.g. integrated-gradients.n_steps=32")
        if name not in chosen:
            raise AuditError(f"--option {item!r}: method {name!r} is not among --method {', '.join(chosen)}")
        options.setdefault(name, {})[key] = _scalar(value)
    return options


def model_options(
    input_size: tuple[int, int] | None,
    channels: int | None,
    mean: str,
    std: str,
    value_range_text: str,
    multilabel: bool = False,
    class_names: str | None = None,
):
    """The loader's ``ModelOptions`` from the shared flags."""
    from audit.models.loader import ModelOptions

    return ModelOptions(
        input_size=input_size,
        channels=channels,
        mean=float_list(mean, "--mean"),
        std=float_list(std, "--std"),
        value_range=value_range(value_range_text),
        multilabel=multilabel,
        class_names=tuple(n.strip() for n in class_names.split(",")) if class_names else None,
    )
