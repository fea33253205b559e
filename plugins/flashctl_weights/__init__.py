"""flashctl built-in plugin: resolve weights references to local folders (path, then Hugging Face cache)."""

from __future__ import annotations

from pathlib import Path

from flashctl import hookimpl


@hookimpl
def resolve_weights(ref: str, offline: bool) -> Path | None:
    from .resolve import resolve_local_or_hub

    return resolve_local_or_hub(ref, offline)
