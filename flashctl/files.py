"""File helpers every writer shares: atomic writes (a temp sibling renamed into place), the umask, sha256, JSON.

A leaf: it imports nothing from flashctl but :mod:`flashctl.errors`.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Collection, Iterator

from .errors import FlashctlError, storage_error


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write (a file or a folder); rename it over ``path`` on success.

    On an exception the temporary is removed and ``path`` is untouched. A folder replaces a folder
    by two renames (the old one is deleted after the new one is in place).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{secrets.token_hex(4)}{path.suffix}")
    try:
        yield tmp
        follow_umask(tmp)
        if tmp.is_dir() and path.is_dir():
            old = tmp.with_name(tmp.name + ".old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process umask (read by setting and restoring it: there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(path: Path) -> None:
    """Give ``path`` (and, for a folder, everything in it) the modes a plain ``open``/``mkdir`` would.

    Writers such as safetensors create files 0600; a shared library must follow the umask instead.
    """
    mask = current_umask()
    path = Path(path)
    items = [path, *path.rglob("*")] if path.is_dir() and not path.is_symlink() else [path]
    for item in items:
        if item.is_symlink() or not item.exists():
            continue
        item.chmod((0o777 if item.is_dir() else 0o666) & ~mask)


@contextmanager
def storage_errors() -> Iterator[None]:
    """Raise an ``OSError`` a user can fix (disk full, read-only, a file in the way) as a one-line ``StorageError``.

    The library's writers run under it, so Python callers get the CLI's message (the ``OSError`` is the cause).
    """
    try:
        yield
    except OSError as exc:
        error = storage_error(exc)
        if error is None:
            raise
        error.errno, error.strerror, error.filename = exc.errno, exc.strerror, exc.filename
        raise error from exc


def atomic_write(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same folder, fsync, ``os.replace``."""
    with storage_errors(), atomic_path(Path(path)) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file written by flashctl; None when absent, a one-line error naming it when corrupt."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise FlashctlError(f"{path}: not valid JSON ({exc})",
                            hint="restore it from the action's .history folder, or train the action again") from None
    if not isinstance(data, dict):
        raise FlashctlError(f"{path}: expected a JSON object, got {type(data).__name__}",
                            hint="restore it from the action's .history folder, or train the action again")
    return data


def expand_files(paths: list[Path], extensions: Collection[str], empty: Callable[[Path], Exception]) -> list[Path]:
    """Files as given; a folder expands to its files with one of ``extensions``, sorted by name.

    A folder with none raises ``empty(folder)``.
    """
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            files.append(path)
            continue
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in extensions)
        if not found:
            raise empty(path)
        files += found
    return files
