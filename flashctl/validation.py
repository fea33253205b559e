"""The one rendering of a pydantic ``ValidationError``: its first problem as a message naming the key, and a hint.

A leaf: it imports pydantic and nothing from flashctl.
"""

from __future__ import annotations

import difflib
from typing import Any, get_args

from pydantic import BaseModel, ValidationError


def dotted(loc: tuple[Any, ...]) -> str:
    """``("clips", 0, "file")`` -> ``clips[0].file``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds: itself, or inside ``list[...]`` / ``... | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for m in map(_model_in, get_args(annotation)) if m is not None), None)


def _model_at(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the last element of ``loc`` (for key suggestions)."""
    for part in loc[:-1]:
        if isinstance(part, int):
            continue  # an item of a list: same model
        field = model.model_fields.get(str(part)) if model is not None else None
        model = _model_in(field.annotation) if field is not None else None
    return model


def _suggest(key: str, model: type[BaseModel] | None) -> str:
    if model is None:
        return ""
    close = difflib.get_close_matches(key, list(model.model_fields), n=1)
    return f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(model.model_fields)}"


def render_validation_error(exc: ValidationError, source: str, model: type[BaseModel], prefix: str = "",
                            hint: str | None = None) -> tuple[str, str]:
    """First problem -> ("SOURCE: prefix.dotted.key: problem (got VALUE)", hint).

    An unknown key gets the closest known one as its hint; otherwise ``hint``, or "fix the value".
    """
    errors = exc.errors()
    err = errors[0]
    loc = tuple(err["loc"])
    key = dotted((*prefix.split("."), *loc) if prefix else loc)
    where = f"{source}: {key}" if key else source
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown key", _suggest(str(loc[-1]), _model_at(model, loc)) or "remove it"
    message = err["msg"].removeprefix("Value error, ")
    shown = err["type"] == "missing" or isinstance(err.get("input"), dict)  # a whole table is no value to show
    got = "" if shown else f" (got {err.get('input')!r})"
    hint = hint or ("fix the value" if len(errors) == 1 else f"{len(errors)} problems; fix this one first")
    return f"{where}: {message[:1].lower()}{message[1:]}{got}", hint
