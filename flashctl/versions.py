"""A motion's machine-written state as versions, swapped by one atomic rename of a symlink.

Layout inside an action folder::

    .versions/<run-id>/     one complete save: weights/, provenance.json, preview.gif, eval/
    current                 symlink -> .versions/<run-id>; replacing it (os.replace) is the swap
    weights, provenance.json, preview.gif, eval    fixed symlinks -> current/<item>, for tools and people

Readers resolve ``current`` once (:func:`live_version`) and read every file from that folder, so at
every instant they see one whole version. A motion saved before versions existed (its items directly
in the action folder) is read from the action folder until its next save; that save first copies
them (hard links) to ``.versions/0-legacy/``, points ``current`` there and links the fixed items
(readers see the same files throughout), then swaps in the new version as usual.

A save killed at any step leaves the old version live; the next writer (under the action's lock)
deletes its staging folder and the version it may have renamed in (:func:`recover`).
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Callable

ITEMS = ("weights", "provenance.json", "preview.gif", "eval")  # what a save may write
VERSIONS = ".versions"
CURRENT = "current"
LEGACY = "0-legacy"  # sorts before every run id
KEEP = 3  # superseded versions kept besides the live one
TMP_NAME = re.compile(r"\..+\.tmp-[0-9a-f]{8}")
AT_FDCWD, RENAME_EXCHANGE = -100, 2

# Fault-injection seam: called with a label after every filesystem step of a save (tests kill the process there).
after_step: Callable[[str], None] | None = None


def _step(label: str) -> None:
    if after_step is not None:
        after_step(label)


def live_version(folder: Path) -> Path:
    """The folder the live version's items are in: ``.versions/<id>`` (``current``), else ``folder`` (old layout)."""
    link = Path(folder) / CURRENT
    if link.is_symlink():
        return Path(folder) / VERSIONS / Path(os.readlink(link)).name  # never outside .versions/
    return Path(folder)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _link(path: Path, target: Path) -> None:
    """Make ``path`` (absent, a file, a folder or a link) a symlink to ``target``, in one step where possible."""
    tmp = _tmp(path)
    os.symlink(target, tmp)
    _step(f"symlink {tmp.name}")
    if path.is_dir() and not path.is_symlink():
        if _exchange(tmp, path):
            old = tmp
        else:  # a moment without ``path``: never mixed, at worst missing
            old = _tmp(path)
            os.rename(path, old)
            os.replace(tmp, path)
        _step(f"exchange {path.name}")
        shutil.rmtree(old)
    else:
        os.replace(tmp, path)
    _fsync(path.parent)
    _step(f"replace {path.name}")


def _adopt_old_layout(folder: Path) -> None:
    """Copy (hard links) an old-layout motion's items into ``.versions/0-legacy`` and point ``current`` at it.

    Readers see the same files before and after; the next swap then works as for any versioned motion.
    """
    legacy = folder / VERSIONS / LEGACY
    legacy.mkdir(parents=True)
    _step(f"mkdir {VERSIONS}/{LEGACY}")
    for name in ITEMS:
        path = folder / name
        if path.is_dir():
            shutil.copytree(path, legacy / name, copy_function=os.link)
        elif path.is_file():
            os.link(path, legacy / name)
        _step(f"link {name} -> {VERSIONS}/{LEGACY}")
    (legacy / "eval").mkdir(exist_ok=True)
    _fsync(legacy)
    _link(folder / CURRENT, Path(VERSIONS) / LEGACY)
    tidy(folder)


def commit(folder: Path, staging: Path, run_id: str) -> None:
    """Make the complete ``staging`` folder the live version of the action in ``folder``."""
    for item in staging.iterdir():
        if item.name not in ITEMS:
            raise ValueError(f"a save may only write {', '.join(ITEMS)}; not {item.name}")
    (staging / "eval").mkdir(exist_ok=True)  # the eval link always resolves to a folder
    for path in sorted(staging.rglob("*")):
        _fsync(path)
    _fsync(staging)
    _step("fsync staging")
    if not (folder / CURRENT).is_symlink() and any((folder / name).exists() for name in ITEMS):
        _adopt_old_layout(folder)
    versions = folder / VERSIONS
    versions.mkdir(exist_ok=True)
    os.rename(staging, versions / run_id)
    _fsync(versions)
    _step(f"rename staging -> {VERSIONS}/{run_id}")
    _link(folder / CURRENT, Path(VERSIONS) / run_id)
    tidy(folder)


def tidy(folder: Path) -> None:
    """Point the fixed items at ``current`` (the same files: ``current`` holds them), drop versions beyond ``KEEP``."""
    for name in ITEMS:
        path, want = folder / name, Path(CURRENT) / name
        if not (path.is_symlink() and Path(os.readlink(path)) == want):
            _link(path, want)
    live = live_version(folder).name
    names = sorted(p.name for p in (folder / VERSIONS).iterdir() if p.is_dir())
    older = [n for n in names if n < live]
    for name in older[:-KEEP] + [n for n in names if n > live]:  # too old, or renamed in but never swapped
        shutil.rmtree(folder / VERSIONS / name)
        _step(f"rmtree {VERSIONS}/{name}")


def recover(staging_root: Path, folder: Path, action: str) -> None:
    """Clean up after killed saves of ``action`` (call under its lock): staging folders, temp names, orphans."""
    for path in staging_root.glob(f"{action}.*") if staging_root.is_dir() else []:
        shutil.rmtree(path, ignore_errors=True)
    for path in folder.iterdir() if folder.is_dir() else []:
        if TMP_NAME.fullmatch(path.name):
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    if (folder / CURRENT).is_symlink():
        tidy(folder)
    elif (folder / VERSIONS).is_dir():  # renamed in before any swap: none of them ever went live
        shutil.rmtree(folder / VERSIONS)
