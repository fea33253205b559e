"""``prepare``: ingest an action's clips into the motion library and cache them normalised.

A new action: every clip is probed and decoded first (a bad clip anywhere changes nothing on
disk), then, under the action's lock, the originals are copied into ``clips/``, ``motion.toml``
is written with their sha256s, and the normalised frames (trim, fps, centre square, resize,
frame count) are cached. An existing action with no clips given: the cache is rebuilt from the
manifest's clips, e.g. after changing ``[prepare]`` geometry.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import FlashConfig
from ..errors import FlashctlError, VideoReadError
from ..files import atomic_write, expand_files, sha256_file
from ..library import MotionLibrary, validate_action_name
from ..manifest import MANIFEST_NAME, ClipEntry, MotionManifest, dumps_manifest
from ..progress import NullReporter, Reporter
from ..video import VIDEO_EXTENSIONS, read_frames

ODD_CHARACTERS = re.compile(r"[^\w.+()-]")  # kept: letters and digits of any script, . + ( ) - _


@dataclass
class PrepareResult:
    action: str
    path: Path
    clips: int
    frames: int
    size: int
    fps: float
    warnings: list[str] = field(default_factory=list)


def cache_meta(config: FlashConfig, manifest: MotionManifest) -> dict[str, Any]:
    """What the frame cache must record to be current: the geometry and the clips' sha256s."""
    p = config.prepare
    return {"frames": p.frames, "fps": p.fps, "size": p.size, "start": p.start,
            "clips": [clip.sha256 for clip in manifest.clips]}


def expand_clips(paths: list[Path]) -> list[Path]:
    """Files as given; folders expand to their video files (by extension, sorted by name)."""
    return expand_files(paths, VIDEO_EXTENSIONS, lambda folder: VideoReadError(
        f"{folder}: no video files in this folder",
        hint=f"clips need one of these extensions: {' '.join(VIDEO_EXTENSIONS)}"))


def _normalise(path: Path, config: FlashConfig, warnings: list[str], reporter: Reporter) -> np.ndarray:
    p = config.prepare
    frames = read_frames(path, fps=p.fps, size=p.size, start=p.start, max_frames=p.frames)  # (f, S, S, 3)
    if len(frames) < p.frames:
        _warn(f"{path.name} has {len(frames)} frames at {p.fps:g} fps after start={p.start:g}s; "
             f"padded to {p.frames} by repeating its last frame", warnings, reporter)
        frames = np.concatenate([frames, np.repeat(frames[-1:], p.frames - len(frames), axis=0)])
    return frames  # (F, S, S, 3)


def _warn(text: str, warnings: list[str], reporter: Reporter) -> None:
    warnings.append(text)
    reporter.note(text, level="warning")


def normalise_clips(files: list[Path], config: FlashConfig, warnings: list[str], reporter: Reporter) -> np.ndarray:
    """Decode every clip to the config's geometry (fps, square size, frame count)."""
    reporter.start("prepare", total=len(files))
    clips = []
    for path in files:
        clips.append(_normalise(path, config, warnings, reporter))
        reporter.advance(1)
    reporter.finish()
    return np.stack(clips)  # (N, F, S, S, 3)


def _unique_names(files: list[Path]) -> list[str]:
    """Each clip's file name with odd characters (backslashes, quotes, spaces, control characters, bytes
    that are not UTF-8) as '_'; a repeated name gets -2, -3, ... before its extension."""
    names: list[str] = []
    for path in files:
        stem, suffix = ODD_CHARACTERS.sub("_", path.stem), ODD_CHARACTERS.sub("_", path.suffix)
        name, n = stem + suffix, 1
        while name in names:
            n += 1
            name = f"{stem}-{n}{suffix}"
        names.append(name)
    return names


def _source(path: Path) -> str:
    """Where a clip came from, as text (bytes that are not UTF-8 written as \\xNN)."""
    return os.fsencode(path.resolve()).decode("utf-8", "backslashreplace")


def _create(config: FlashConfig, library: MotionLibrary, action: str, files: list[Path], prompt: str,
            frames: np.ndarray) -> None:
    """Copy the clips in, write motion.toml and the cache; called with the action's lock held."""
    if library.exists(action):
        raise FlashctlError(f"motion '{action}' was created by another process meanwhile",
                            hint=f"run `flashctl prepare {action}` without --clips to rebuild its cache")
    entries = []
    with library.create(action) as staging:
        (staging / "clips").mkdir()
        for path, name in zip(files, _unique_names(files)):
            shutil.copy2(path, staging / "clips" / name)
            entries.append(ClipEntry(file=f"clips/{name}", sha256=sha256_file(staging / "clips" / name),
                                     source=_source(path)))
        manifest = MotionManifest(name=action, prompt=prompt, clips=entries)
        atomic_write(staging / MANIFEST_NAME, dumps_manifest(manifest))
    library.save_frames(action, frames, cache_meta(config, manifest))


def _manifest_clips(library: MotionLibrary, action: str, manifest: MotionManifest) -> list[Path]:
    """The manifest's clips, each checked against its recorded sha256."""
    folder = library.path(action)
    files = []
    for clip in manifest.clips:
        path = folder / clip.file
        if path.is_file() and sha256_file(path) != clip.sha256:
            raise FlashctlError(f"{path} does not match its sha256 in {folder / 'motion.toml'}",
                                hint="restore the original clip, or put the new file's sha256 in motion.toml")
        files.append(path)
    if not files:
        raise VideoReadError(f"{folder / 'motion.toml'} lists no clips",
                             hint="add [[clips]] entries (file and sha256) for the videos in clips/")
    return files


def prepare(config: FlashConfig, library: MotionLibrary, action: str, clips: list[Path] | None,
            prompt: str | None, reporter: Reporter = NullReporter()) -> PrepareResult:
    """Create ``action`` from ``clips`` (files or folders), or rebuild an existing action's cache."""
    validate_action_name(action)
    warnings: list[str] = []
    if library.exists(action):
        if clips:
            raise FlashctlError(f"motion '{action}' already exists in {library.root}; prepare does not add clips to it",
                                hint=f"add clips by hand to clips/ and motion.toml, then run "
                                     f"`flashctl prepare {action}`; or start over with `flashctl motions rm {action}`")
        manifest = library.manifest(action)
        files = _manifest_clips(library, action, manifest)
        frames = normalise_clips(files, config, warnings, reporter)
        with library.lock(action):
            library.save_frames(action, frames, cache_meta(config, manifest))
    else:
        if not clips:
            raise VideoReadError(f"motion '{action}' does not exist in {library.root} and no clips were given",
                                 hint=f'create it with `flashctl prepare {action} --clips DIR --prompt "..."`')
        if not (prompt and prompt.strip()):
            raise FlashctlError(f"a new motion needs a prompt describing the action ('{action}' has none)",
                                hint=f'add --prompt "a person doing a {action.replace("_", " ")}"')
        files = expand_clips(clips)
        if len(files) > config.prepare.max_clips:
            _warn(f"{len(files)} clips given; FLASH is meant for {config.prepare.max_clips} or fewer "
                 f"(prepare.max_clips); using all of them", warnings, reporter)
        frames = normalise_clips(files, config, warnings, reporter)
        with library.lock(action):
            _create(config, library, action, files, prompt.strip(), frames)
    p = config.prepare
    return PrepareResult(action, library.path(action), len(frames), p.frames, p.size, p.fps, warnings)
