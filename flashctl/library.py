"""The motion library: one folder per action, read freely, written only under a lock and by renames.

Layout (DESIGN.md "The motion library on disk")::

    <root>/<action>/motion.toml, clips/, .cache/   human-owned files and prepare's cache
    <root>/<action>/current, .versions/<run-id>/   the machine-written state, one version per save
                                                   (weights/, provenance.json, preview.gif, eval/;
                                                   see :mod:`flashctl.versions`)
    <root>/.staging/<action>.<run-id>/   a save in progress (renamed in whole when complete)
    <root>/.locks/<action>.lock, .pid    the per-action writer lock and its owner

The lock files live outside the action folder so that removing an action, or creating a new
one, never deletes or creates a lock file another process may be holding.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from . import versions
from .errors import (FlashctlError, InvalidActionNameError, LibraryBusyError, ManifestError, MotionNotFoundError,
                     StaleCacheError, StorageError, short_value)
from .files import atomic_write, follow_umask, read_json, sha256_file, storage_errors
from .manifest import MANIFEST_NAME, MotionManifest, dumps_manifest, is_safe_relative, load_manifest

ACTION_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
CACHE_NAME = "frames.safetensors"

_held: dict[tuple[int, Path], int] = {}  # (thread, lock file) -> nesting depth: lock() is re-entrant per thread


def validate_action_name(name: str) -> str:
    """Return ``name`` if it is a plain slug ``[a-z0-9][a-z0-9_-]{0,63}``, else raise."""
    if not isinstance(name, str) or not ACTION_NAME.fullmatch(name):
        raise InvalidActionNameError(
            f"invalid action name {name!r}: use 1-64 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit",
            hint="for example 'soccer_shot' or 'golf-swing'",
        )
    return name


def new_run_id() -> str:
    """Sortable and unique: UTC time to the microsecond plus a random suffix."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(2)


@dataclass(frozen=True)
class MotionInfo:
    name: str
    prompt: str
    clips: int
    trained: bool
    backbone: str | None
    last_trained: str | None  # ISO 8601
    size_bytes: int
    broken: str | None = None  # why motion.toml or a machine-written file cannot be read (the rest is then empty)


@dataclass(frozen=True)
class Drift:
    file: str  # relative to the action folder
    problem: str  # "missing", "modified", "untracked" or "unreadable"
    expected: str | None  # sha256 on record
    actual: str | None  # sha256 on disk
    detail: str | None = None  # for "unreadable": the error


class MotionLibrary:
    """The actions under ``root``. Reading needs no lock; every write goes through ``lock``/``stage``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- finding actions -------------------------------------------------------------------
    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if ACTION_NAME.fullmatch(p.name) and (p / MANIFEST_NAME).is_file())

    def path(self, action: str) -> Path:
        return self.root / validate_action_name(action)

    def exists(self, action: str) -> bool:
        return (self.path(action) / MANIFEST_NAME).is_file()

    def require(self, action: str) -> Path:
        if not self.exists(action):
            available = ", ".join(self.names()) or "none"
            raise MotionNotFoundError(f"motion '{action}' not found in {self.root}; available: {available}",
                                      hint=f'create it with `flashctl prepare {action} --clips DIR --prompt "..."`')
        return self.path(action)

    # -- the manifest ----------------------------------------------------------------------
    def manifest(self, action: str) -> MotionManifest:
        path = self.require(action) / MANIFEST_NAME
        manifest = load_manifest(path)
        if manifest.name != action:
            raise ManifestError(f"{path}: name is {manifest.name!r} but the folder is {action!r}",
                                hint="make them match: fix `name` or rename the folder")
        return manifest

    def write_manifest(self, action: str, manifest: MotionManifest) -> Path:
        """Write a new action's motion.toml; an existing one is never rewritten."""
        path = self.path(action) / MANIFEST_NAME
        if manifest.name != action:
            raise ValueError(f"manifest name {manifest.name!r} != action {action!r}")
        if path.exists():
            raise FlashctlError(f"{path} already exists; flashctl never rewrites a motion.toml",
                                hint="edit it by hand")
        return atomic_write(path, dumps_manifest(manifest))

    # -- locking and saving ----------------------------------------------------------------
    def _lock_file(self, action: str) -> Path:
        return self.root / ".locks" / f"{validate_action_name(action)}.lock"

    @contextmanager
    def lock(self, action: str) -> Iterator[None]:
        """Hold the action's writer lock (timeout 0: a second writer fails at once, be it another process or
        another thread of this one; re-entrant within a thread)."""
        from filelock import FileLock, Timeout

        lock_file = self._lock_file(action)
        if self.root.exists() and not self.root.is_dir():
            raise FlashctlError(f"the motion library {self.root} is a file, not a folder",
                                hint="point [library] path at a folder (flashctl.toml)")
        with storage_errors():
            lock_file.parent.mkdir(parents=True, exist_ok=True)
        key = (threading.get_ident(), lock_file.resolve())
        if _held.get(key):
            _held[key] += 1
            try:
                yield
            finally:
                _held[key] -= 1
            return
        pid_file = lock_file.with_suffix(".pid")
        flock = FileLock(str(lock_file), timeout=0)
        try:
            flock.acquire()
        except Timeout:
            raise LibraryBusyError(f"motion '{action}' is busy: held by {_lock_owner(pid_file)}",
                                   hint="wait for that flashctl command to finish, or stop it") from None
        except OSError as exc:
            if exc.errno != errno.ENOLCK:
                raise
            raise StorageError(f"cannot lock motion '{action}': the filesystem holding {lock_file} refused the lock "
                               f"({exc.strerror})",
                               hint="on NFSv3 the lock needs rpc.statd and lockd running on client and server; "
                                    "see 'Sharing motions' in docs/reliability.md") from None
        try:
            with storage_errors():
                pid_file.write_text(f"{os.getpid()} {socket.gethostname()}")
            _held[key] = 1
            yield
        finally:
            _held.pop(key, None)
            pid_file.unlink(missing_ok=True)
            flock.release()

    @contextmanager
    def create(self, action: str) -> Iterator[Path]:
        """Yield an empty staging folder for a new action's files (clips/, motion.toml); one rename makes it live."""
        live = self.path(action)
        with self._staging(action) as staging:
            yield staging
            if live.exists():
                bare = "" if self.exists(action) else " (without motion.toml)"
                raise FlashctlError(f"{live} already exists{bare}",
                                    hint=f"pick another name, or move {live} away")
            os.rename(staging, live)

    @contextmanager
    def stage(self, action: str, on_saved: Callable[[str, Path], None] | None = None) -> Iterator[Path]:
        """Yield an empty staging folder for a save; on success it becomes the live version in one swap.

        The caller writes only machine-written items (weights/, provenance.json, preview.gif, eval/);
        see :mod:`flashctl.versions`. Then ``on_saved(action, action_folder)`` is called. On an exception
        the staging folder is deleted and the live motion is untouched. Holds the action's lock throughout.
        """
        live = self.require(action)
        with self._staging(action) as staging:
            yield staging
            follow_umask(staging)  # safetensors writes 0600; a shared library follows the umask
            versions.commit(live, staging, staging.name.split(".", 1)[1])
        if on_saved is not None:
            on_saved(action, live)

    @contextmanager
    def stage_superseded(self, action: str) -> Iterator[Path]:
        """Like :meth:`stage`, but the complete version goes in as the newest superseded one; ``current`` stays.

        Its folder is named just below the live version's, so :func:`versions.tidy` keeps it as history.
        """
        live = self.require(action)
        if not (live / versions.CURRENT).is_symlink():
            raise FlashctlError(f"motion '{action}' has no versioned current motion to keep beside a new version",
                                hint="make the new one current (--make-current), or save the action once first")
        with self._staging(action) as staging:
            yield staging
            follow_umask(staging)
            for item in staging.iterdir():
                if item.name not in versions.ITEMS:
                    raise ValueError(f"a save may only write {', '.join(versions.ITEMS)}; not {item.name}")
            (staging / "eval").mkdir(exist_ok=True)
            name = _name_before(versions.live_version(live).name)
            os.rename(staging, live / versions.VERSIONS / name)
            versions.tidy(live)

    def find_run(self, action: str, run_id: str) -> Path | None:
        """The version folder (live or superseded) whose provenance.json records ``run_id``, if any."""
        folder = self.path(action)
        candidates = [self.version_dir(action)]
        candidates += sorted((folder / versions.VERSIONS).iterdir()) if (folder / versions.VERSIONS).is_dir() else []
        for version in candidates:
            try:
                if (read_json(version / "provenance.json") or {}).get("run_id") == run_id:
                    return version
            except FlashctlError:
                continue
        return None

    @contextmanager
    def _staging(self, action: str) -> Iterator[Path]:
        """Under the action's lock, after cleaning up killed saves: a fresh ``.staging/<action>.<run-id>``.

        Storage faults in the save (the caller's writes included) are one-line ``StorageError``s.
        """
        with storage_errors(), self.lock(action):
            versions.recover(self.root / ".staging", self.path(action), action)
            staging = self.root / ".staging" / f"{action}.{new_run_id()}"
            staging.mkdir(parents=True)
            try:
                yield staging
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    def remove(self, action: str) -> None:
        """Delete the action (under its lock): one rename out of the library, then the delete."""
        folder = self.require(action)
        with storage_errors(), self.lock(action):
            trash = self.root / ".staging" / f"{action}.removed-{new_run_id()}"
            trash.parent.mkdir(parents=True, exist_ok=True)
            os.replace(folder, trash)
            shutil.rmtree(trash, ignore_errors=True)

    # -- machine-written parts -------------------------------------------------------------
    def cache_dir(self, action: str) -> Path:
        return self.path(action) / ".cache"

    def version_dir(self, action: str) -> Path:
        """The live version's folder; resolve it once and read every machine-written file from it."""
        return versions.live_version(self.path(action))

    def weights_dir(self, action: str) -> Path:
        return self.version_dir(action) / "weights"

    def is_trained(self, action: str) -> bool:
        return (self.weights_dir(action) / "config.json").is_file()

    def weights_config(self, action: str) -> dict[str, Any] | None:
        return read_json(self.weights_dir(action) / "config.json")

    def provenance(self, action: str) -> dict[str, Any] | None:
        return read_json(self.version_dir(action) / "provenance.json")

    def save_frames(self, action: str, frames: np.ndarray, meta: dict[str, Any]) -> Path:
        """Write prepare's cache: ``frames`` (N, F, S, S, 3) uint8 and JSON-able ``meta``, atomically."""
        from safetensors.numpy import save

        if frames.dtype != np.uint8 or frames.ndim != 5 or frames.shape[-1] != 3 or frames.shape[2] != frames.shape[3]:
            raise ValueError(f"frames must be (N, F, S, S, 3) uint8, got {frames.shape} {frames.dtype}")
        data = save({"frames": np.ascontiguousarray(frames)}, metadata={"flashctl": json.dumps(meta, sort_keys=True)})
        return atomic_write(self.cache_dir(action) / CACHE_NAME, data)

    def load_frames(self, action: str, expect: dict[str, Any] | None = None,
                    clips: list[Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Read prepare's cache. Every key of ``expect`` must equal the cached meta, else it is stale.

        ``clips`` (the manifest's entries): the cache, where it records its clips' sha256s, must be of these.
        """
        from safetensors import SafetensorError, safe_open

        path = self.cache_dir(action) / CACHE_NAME
        rebuild = f"rebuild it with `flashctl prepare {action}`"
        if not path.is_file():
            raise StaleCacheError(f"motion '{action}' has no prepared frames ({path} is missing)", hint=rebuild)
        try:
            with safe_open(str(path), framework="np") as fh:
                meta = json.loads((fh.metadata() or {})["flashctl"])
                frames = fh.get_tensor("frames")  # (N, F, S, S, 3) uint8
        except (SafetensorError, OSError, KeyError, ValueError) as exc:
            raise StaleCacheError(f"{path}: unreadable frame cache ({type(exc).__name__}: {exc})",
                                  hint=rebuild) from None
        expect = dict(expect or {})
        if clips is not None and "clips" in meta:
            expect["clips"] = [clip.sha256 for clip in clips]
        for key, want in expect.items():
            if meta.get(key) != want:
                raise StaleCacheError(f"prepared frames of '{action}' are stale: {key} is {short_value(meta.get(key))} "
                                      f"in the cache but {short_value(want)} now", hint=rebuild)
        return frames, meta

    # -- reports ---------------------------------------------------------------------------
    def info(self, action: str) -> MotionInfo:
        """The action's summary; one whose motion.toml or weights cannot be read comes back ``broken``."""
        folder = self.require(action)
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
        try:
            return self._info(action, size)
        except FlashctlError as exc:
            return MotionInfo(action, "", 0, False, None, None, size, broken=exc.message)

    def _info(self, action: str, size: int) -> MotionInfo:
        manifest = self.manifest(action)
        config = self.weights_config(action) or {}
        backbone = config.get("backbone")
        if isinstance(backbone, dict):
            backbone = backbone.get("name")
        last = (self.provenance(action) or {}).get("finished_at")
        if last is None and self.is_trained(action):
            mtime = (self.weights_dir(action) / "config.json").stat().st_mtime
            last = datetime.fromtimestamp(mtime, timezone.utc).isoformat(timespec="seconds")
        return MotionInfo(action, manifest.prompt, len(manifest.clips), self.is_trained(action),
                          backbone, last, size)

    def verify(self, action: str) -> list[Drift]:
        """Clips against motion.toml's sha256s, untracked files in clips/, and :meth:`version_drifts`.

        A motion.toml or provenance.json that cannot be read is one ``unreadable`` drift (the others go on).
        """
        folder = self.require(action)
        try:
            return self._verify(action, folder)
        except FlashctlError as exc:
            return [Drift(MANIFEST_NAME if isinstance(exc, ManifestError) else "provenance.json", "unreadable",
                          None, None, exc.message)]

    def _verify(self, action: str, folder: Path) -> list[Drift]:
        manifest = self.manifest(action)
        drifts = self.clip_drifts(action, manifest)
        drifts += self.version_drifts(action, self.version_dir(action))
        tracked = {clip.file for clip in manifest.clips}
        clips = folder / "clips"
        for path in sorted(clips.iterdir()) if clips.is_dir() else []:
            rel = f"clips/{path.name}"
            if path.is_file() and rel not in tracked:
                drifts.append(Drift(rel, "untracked", None, sha256_file(path)))
        return drifts

    def clip_drifts(self, action: str, manifest: MotionManifest) -> list[Drift]:
        """The manifest's clips against their sha256s (missing or modified ones)."""
        folder = self.path(action)
        return [drift for clip in manifest.clips if (drift := _drift(folder, clip.file, clip.sha256))]

    def require_clips_unchanged(self, action: str, manifest: MotionManifest) -> None:
        """Raise :class:`StaleCacheError` if a clip changed since ``prepare`` hashed it (its frames are stale).

        A missing clip is left to ``verify``: the cache still holds the frames of the clip on record.
        """
        drifts = [d for d in self.clip_drifts(action, manifest) if d.problem == "modified"]
        if drifts:
            listed = ", ".join(f"{d.file} ({d.problem})" for d in drifts)
            raise StaleCacheError(f"motion '{action}': clips changed since they were prepared: {listed}",
                                  hint=f"restore them; or, if the change is meant, put the new sha256 in "
                                       f"{self.path(action) / MANIFEST_NAME} and run `flashctl prepare {action}`")

    def version_drifts(self, action: str, version: Path) -> list[Drift]:
        """The files of ``version`` (a :meth:`version_dir`) against its provenance.json ``files`` sha256s.

        ``files`` maps paths relative to the version's folder to sha256s.
        """
        if not version.is_dir():
            return [Drift(f"{versions.CURRENT} -> {version.relative_to(self.path(action))}", "missing", None, None)]
        files = (read_json(version / "provenance.json") or {}).get("files") or {}
        return [drift for rel, sha in files.items() if is_safe_relative(rel) and (drift := _drift(version, rel, sha))]

    def check_version(self, action: str, version: Path) -> None:
        """Raise unless every file of ``version`` matches its sha256 on record (animate calls this before loading)."""
        drifts = self.version_drifts(action, version)
        if drifts:
            listed = ", ".join(f"{d.file} ({d.problem})" for d in drifts)
            raise FlashctlError(f"motion '{action}' does not match its provenance.json: {listed}",
                                hint=f"see `flashctl motions verify {action}`; train it again, or restore a "
                                     f"version from {self.path(action) / versions.VERSIONS}")


def _lock_owner(pid_file: Path) -> str:
    """Who holds a lock, from its .pid file (``PID HOST``; a bare ``PID`` from older flashctl): the host when not ours."""
    try:
        pid, *host = pid_file.read_text().split()
        owner = f"pid {int(pid)}"
    except (OSError, ValueError):
        return "another process"
    return owner if not host or host[0] == socket.gethostname() else f"{owner} on {host[0]}"


def _name_before(live: str) -> str:
    """A version folder name that sorts just below ``live`` (a run id one microsecond earlier, or before 0-legacy)."""
    if live == versions.LEGACY:
        return "0-imported-" + secrets.token_hex(2)
    try:
        when = datetime.strptime(live.split("Z", 1)[0], "%Y%m%dT%H%M%S%f")
    except ValueError:
        raise FlashctlError(f"cannot place a version before the current one ({live})",
                            hint="make the new one current (--make-current)") from None
    return (when - timedelta(microseconds=1)).strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(2)


def _drift(root: Path, rel: str, sha: str) -> Drift | None:
    path = root / rel
    if not path.is_file():
        return Drift(rel, "missing", sha, None)
    actual = sha256_file(path)
    return Drift(rel, "modified", sha, actual) if actual != sha else None
