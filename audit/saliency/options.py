"""A saliency method's options (``-o METHOD.KEY=VALUE``), read from the method itself.

The options are the keyword parameters of the method class's ``__init__`` (name, annotated
type, default) with a one-line meaning from its ``option_help``; a method that takes
``**kwargs`` lists what they may be in ``extra_options``. ``audit methods`` prints them, and a
misspelt option is refused before any work, naming the valid ones.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any


NO_DEFAULT = "required"


@dataclass(frozen=True)
class MethodOption:
    name: str
    type: str
    default: Any
    meaning: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "default": self.default, "meaning": self.meaning}

    def short(self) -> str:
        """``n_steps (int, default 50)``"""
        return f"{self.name} ({self.type}, default {self.default!r})" if self.default != NO_DEFAULT else f"{self.name} ({self.type}, required)"


def _type_name(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return "any"
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    return text.replace("typing.", "")


def method_options(cls: type) -> list[MethodOption]:
    """Every option of method class ``cls``, in signature order, then its ``extra_options``."""
    meanings: dict[str, str] = getattr(cls, "option_help", {})
    found = []
    for parameter in inspect.signature(cls).parameters.values():
        if parameter.name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        default = NO_DEFAULT if parameter.default is parameter.empty else parameter.default
        found.append(MethodOption(parameter.name, _type_name(parameter.annotation), default, meanings.get(parameter.name, "")))
    extra = getattr(cls, "extra_options", None)
    return found + (list(extra()) if callable(extra) else [])


def unknown_option(name: str, cls: type, key: str) -> str | None:
    """Why method ``name`` (class ``cls``) refuses option ``key``, naming the valid ones; None
    when it takes it (or takes any keyword and does not list them)."""
    valid = method_options(cls)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(cls).parameters.values())
    if key in {option.name for option in valid} or (takes_any and not callable(getattr(cls, "extra_options", None))):
        return None
    if not valid:
        return f"method {name!r} takes no options"
    listed = ", ".join(option.short() for option in valid)
    return f"{name} has no option {key!r}; its options: {listed} (`audit methods {name}` explains them)"
