"""Parsing and bounds of the command line's values: seeds, number lists, method options.

Bad values are one-line errors (exit 2): ``typer.BadParameter`` from a typer callback (printed by
``audit.cli.usage``), ``AuditError`` from the parsers here.
"""

from __future__ import annotations

import inspect
import json
import math
import types
import typing
from typing import Annotated, Any, Optional

import typer

from audit.errors import AuditError
from audit.saliency.options import unknown_option

#: Seeds are integers in [0, 2**32 - 1], the range numpy's ``np.random.seed`` takes.
SEED_MAX = 2**32 - 1


def seed_in_range(value: int) -> int:
    """Typer callback of ``--seed``: a seed numpy, torch and ``random`` all take."""
    if not 0 <= value <= SEED_MAX:
        raise typer.BadParameter(f"must be an integer from 0 to 2**32 - 1 = {SEED_MAX}")
    return value


Seed = Annotated[int, typer.Option("--seed", callback=seed_in_range, help="Random seed, 0 to 2**32 - 1 (runs are deterministic given it).")]

def positive_size(value: tuple[int, int] | None) -> tuple[int, int] | None:
    """Typer callback of ``--input-size``: H and W ≥ 1 (the model's input is allocated from them)."""
    if value is not None and min(value) < 1:
        raise typer.BadParameter("H and W must be ≥ 1")
    return value


def fraction(value: float) -> float:
    """Typer callback of a fraction (``--mask-fraction``): in (0, 1]."""
    if not 0 < value <= 1:
        raise typer.BadParameter("must be a fraction in (0, 1]")
    return value


# The model-input flags shared by every command that loads a classifier.
InputSize = Annotated[Optional[tuple[int, int]], typer.Option("--input-size", callback=positive_size, help="H W, when the model does not declare it.")]
Channels = Annotated[Optional[int], typer.Option("--channels", min=1, help="Input channels, when the model does not declare them.")]
Mean = Annotated[Optional[str], typer.Option("--mean", help="Per-channel mean subtracted after scaling (comma-separated; default: the model's metadata, else 0).")]
Std = Annotated[Optional[str], typer.Option("--std", help="Per-channel std divided after scaling (comma-separated; default: the model's metadata, else 1).")]
ValueRange = Annotated[Optional[str], typer.Option("--value-range", help="Pixel range the model expects before mean/std, e.g. 0,255 (default: the model's metadata, else 0,1).")]
Multilabel = Annotated[bool, typer.Option("--multilabel", help="Sigmoid per output instead of softmax.")]

# Where and in what precision the model computes (``audit.device.resolve``: the flag, else the
# config file's ``device`` / ``precision``, else auto / fp32).
Device = Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or cuda:N [default: audit.toml's device, else auto: a GPU when torch sees one].")]
Precision = Annotated[Optional[str], typer.Option("--precision", help="fp32, bf16 or fp16 for the forward and backward passes [default: audit.toml's precision, else fp32].")]

# Data loading (audit.data.loading).
Workers = Annotated[
    Optional[int],
    typer.Option("--workers", min=0, help="Processes that decode and resize images ahead of the model; 0 reads them in this "
                 "process (a background thread). Default: CPU cores − 1, at most 8, for a model on a GPU, 0 on the CPU; never more than the CPU count (at least 8)."),
]


def float_list(text: str, flag: str, example: str = "0.5,0.5,0.5") -> tuple[float, ...]:
    """'0.485,0.456,0.406' → (0.485, 0.456, 0.406); finite numbers only."""
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise AuditError(f"{flag} {text}: give comma-separated numbers, e.g. {flag} {example}") from exc
    if not values:
        raise AuditError(f"{flag} is empty; give comma-separated numbers, e.g. {flag} {example}")
    if not all(math.isfinite(v) for v in values):
        raise AuditError(f"{flag} {text}: must be finite numbers, e.g. {flag} {example}")
    return values


def std_list(text: str) -> tuple[float, ...]:
    """``--std``: finite and > 0 (the input is divided by it)."""
    values = float_list(text, "--std", "0.229,0.224,0.225")
    if not all(v > 0 for v in values):
        raise AuditError(f"--std {text}: must be > 0 (the input is divided by it), e.g. --std 0.229,0.224,0.225")
    return values


def value_range(text: str) -> tuple[float, float]:
    values = float_list(text, "--value-range", "0,255")
    if len(values) != 2 or values[0] >= values[1]:
        raise AuditError(f"--value-range {text}: give LOW,HIGH with LOW < HIGH, e.g. --value-range 0,255")
    return values[0], values[1]


def _scalar(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def method_options(items: list[str], chosen: list[str]) -> dict[str, dict[str, Any]]:
    """['integrated-gradients.n_steps=32'] → {'integrated-gradients': {'n_steps': 32}}.

    VALUE is read as JSON (else as text) and checked against the method class's ``__init__``:
    the key must be one of its parameters (unless it takes ``**kwargs``), and the value of the
    parameter's type, from its annotation, else from its default's type (an int is accepted for a
    float; text is kept as text for a ``str``). Numbers must be finite; a ``seed`` must be in
    [0, 2**32 - 1]. Built-ins and plugins are checked alike.
    """
    from audit.saliency import methods

    options: dict[str, dict[str, Any]] = {}
    for item in items:
        name, dot, rest = item.partition(".")
        key, equals, value = rest.partition("=")
        if not dot or not equals or not key:
            raise AuditError(f"--option {item!r}: write METHOD.KEY=VALUE, e.g. integrated-gradients.n_steps=32")
        if name not in chosen:
            raise AuditError(f"--option {item!r}: method {name!r} is not among --method {', '.join(chosen)}")
        options.setdefault(name, {})[key] = _typed_value(item, methods.get(name), key, value)
    return options


_KINDS: dict[type, str] = {bool: "true or false", int: "an integer", float: "a number", str: "text", type(None): "null", list: "a JSON list", dict: "a JSON object"}


def _typed_value(item: str, cls: type, key: str, text: str) -> Any:
    """The value of ``--option METHOD.KEY=TEXT``, checked against ``cls.__init__``'s ``key``."""
    value = _scalar(text)
    if isinstance(value, float) and not math.isfinite(value):
        raise AuditError(f"--option {item}: {text} is not a finite number; give a finite one")
    parameter = _parameter(item, cls, key)
    accepted = None if parameter is None else _accepted(cls, parameter)
    if accepted is None or not accepted <= _KINDS.keys():
        return value  # no type to check against (Any, **kwargs, a type we do not parse)
    if str in accepted and not isinstance(value, str) and not _fits(value, accepted):
        value = text
    if not _fits(value, accepted):
        example = "" if parameter.default in (inspect.Parameter.empty, None) else f", e.g. {item.partition('=')[0]}={json.dumps(parameter.default)}"
        kinds = " or ".join(_KINDS[t] for t in _KINDS if t in accepted)
        raise AuditError(f"--option {item}: {key} takes {kinds}, not {text}{example}")
    if key == "seed" and isinstance(value, int) and not 0 <= value <= SEED_MAX:
        raise AuditError(f"--option {item}: a seed must be an integer from 0 to 2**32 - 1 = {SEED_MAX}")
    return value


def _parameter(item: str, cls: type, key: str) -> inspect.Parameter | None:
    """``key``'s parameter of ``cls.__init__``; None when it takes any keyword (``**kwargs``)."""
    parameters = inspect.signature(cls).parameters
    named = {n: p for n, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if key in named:
        return named[key]
    refused = unknown_option(item.partition(".")[0], cls, key)  # **kwargs: its ``extra_options``, if it lists them
    if refused:
        raise AuditError(f"--option {item}: {refused}")
    return None


def _accepted(cls: type, parameter: inspect.Parameter) -> set[type] | None:
    """The types ``parameter`` accepts: from its annotation, else its default's type; None: any."""
    try:
        annotation = typing.get_type_hints(cls.__init__).get(parameter.name, parameter.empty)
    except Exception:  # an annotation that does not resolve: fall back on the default
        annotation = parameter.empty
    if annotation is parameter.empty:
        default = parameter.default
        return None if default in (parameter.empty, None) else {type(default)}
    return _types_of(annotation)


def _types_of(annotation: Any) -> set[type] | None:
    if annotation is Any:
        return None
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        parts = [_types_of(arg) for arg in typing.get_args(annotation)]
        return None if any(p is None for p in parts) else set().union(*parts)
    if origin is not None:
        return {origin} if isinstance(origin, type) else None
    if annotation is None:
        return {type(None)}
    return {annotation} if isinstance(annotation, type) else None


def _fits(value: Any, accepted: set[type]) -> bool:
    if isinstance(value, bool):
        return bool in accepted
    if isinstance(value, int):
        return int in accepted or float in accepted
    return type(value) in accepted


def model_options(
    input_size: tuple[int, int] | None,
    channels: int | None,
    mean: str | None,
    std: str | None,
    value_range_text: str | None,
    multilabel: bool = False,
    class_names: str | None = None,
    device=None,
):
    """The loader's ``ModelOptions`` from the shared flags (``device``: a ``torch.device``,
    ``audit.device.resolve``; None: the CPU)."""
    from audit.models.loader import ModelOptions

    return ModelOptions(
        **({} if device is None else {"device": device}),
        input_size=input_size,
        channels=channels,
        mean=None if mean is None else float_list(mean, "--mean"),
        std=None if std is None else std_list(std),
        value_range=None if value_range_text is None else value_range(value_range_text),
        multilabel=multilabel,
        class_names=None if class_names is None else names_list(class_names),
    )


def names_list(text: str) -> tuple[str, ...]:
    """``--class-names 'cat,dog'`` → ('cat', 'dog'): every name non-empty and given once."""
    names = tuple(n.strip() for n in text.split(","))
    if not all(names):
        raise AuditError(f"--class-names {text!r}: a name is empty; give comma-separated names, e.g. --class-names cat,dog")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise AuditError(f"--class-names {text!r}: {', '.join(map(repr, repeated))} given more than once; give each class its own name")
    return names
