"""Typer options derived from a pydantic settings model, so a command documents and defaults
each knob exactly as the model does (the model is the one owner of its defaults)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import typer
from pydantic import BaseModel

from dex_serving.settings import flags

R = TypeVar("R")
_SEP = "__"


def settings_options(
    model: type[BaseModel],
    param: str,
    *,
    fields: tuple[str, ...] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Add one option per field of ``model`` (or of ``fields``) to a typer command and pass
    their values to it as one dict in the keyword argument ``param``, for the command to
    validate with the model (together with what it sets itself).

    ``defaults`` overrides a field's default for this command only (e.g. the local retrain
    command of ``dexctl serve``); help and types still come from the model.
    """
    chosen = fields or tuple(model.model_fields)
    overrides = dict(defaults or {})

    def decorate(func: Callable[..., R]) -> Callable[..., R]:
        own = [p for p in inspect.signature(func).parameters.values() if p.name != param]
        derived = []
        for name in chosen:
            field = model.model_fields[name]
            default = overrides.get(name, field.get_default(call_default_factory=True))
            derived.append(
                inspect.Parameter(
                    f"{param}{_SEP}{name}",
                    inspect.Parameter.KEYWORD_ONLY,
                    default=typer.Option(default, *flags(name, field), help=field.description),
                    annotation=field.annotation,
                )
            )

        @functools.wraps(func)
        def command(**kwargs: Any) -> R:
            prefix = f"{param}{_SEP}"
            values = {k[len(prefix) :]: kwargs.pop(k) for k in list(kwargs) if k.startswith(prefix)}
            return func(**kwargs, **{param: values})

        command.__signature__ = inspect.Signature(own + derived)  # type: ignore[attr-defined]
        return command

    return decorate
