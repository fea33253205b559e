"""A weights reference -> local folder: an existing folder, else a hub id in the local HF cache.

Only when ``offline`` is false may a hub id be downloaded (into the standard HF cache, where
every other tool finds it too).
"""

from __future__ import annotations

from pathlib import Path

from flashctl.errors import WeightsNotFoundError


def resolve_local_or_hub(ref: str, offline: bool, hub_cache: Path | None = None) -> Path | None:
    """``hub_cache`` overrides the Hugging Face cache folder (default: HF_HUB_CACHE)."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.is_absolute() or ref.startswith((".", "~")) or ref.count("/") != 1:
        return None  # a path that does not exist, or not an "owner/name" hub id
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    cache = str(hub_cache) if hub_cache is not None else None
    try:
        return Path(snapshot_download(ref, cache_dir=cache, local_files_only=True))
    except (FileNotFoundError, HFValidationError):  # LocalEntryNotFoundError is a FileNotFoundError
        if offline:
            return None
    try:
        return Path(snapshot_download(ref, cache_dir=cache))
    except Exception as exc:  # network, auth, missing repo: all mean "not available"
        raise WeightsNotFoundError(f"could not download '{ref}': {type(exc).__name__}: {exc}".splitlines()[0],
                                   hint="check the network and the repo id, or put the folder on disk") from None
