"""Plain data -> TOML text (``flashctl config show``): tables in order, values as TOML literals, optional
end-of-line comments (where each value came from). ``None`` has no TOML form and is left out."""

from __future__ import annotations

import re
from typing import Any


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        import json

        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None) + "}"
    raise TypeError(f"no TOML form for {value!r}")


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_value(str(key))


def to_toml(data: dict[str, Any], comments: dict[str, str] | None = None) -> str:
    """Plain data -> TOML text (tables for nested dicts; ``None`` values become comments: TOML has no null).

    ``comments`` maps ``"section.key"`` to a trailing comment (``config show --sources``).
    """
    comments = comments or {}
    lines: list[str] = []

    def emit(table: dict[str, Any], prefix: list[str]) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        tables = {k: v for k, v in table.items() if isinstance(v, dict)}
        if prefix and (scalars or not tables):
            lines.append(("\n" if lines else "") + "[" + ".".join(_toml_key(p) for p in prefix) + "]")
        for key, value in scalars.items():
            dotted = ".".join([*prefix, key])
            note = f"  # {comments[dotted]}" if dotted in comments else ""
            if value is None:
                lines.append(f"# {_toml_key(key)} is not set{note.replace('  #', ';', 1)}")
            else:
                lines.append(f"{_toml_key(key)} = {_toml_value(value)}{note}")
        for key, value in tables.items():
            emit(value, [*prefix, key])

    emit(data, [])
    return "\n".join(lines) + "\n"
