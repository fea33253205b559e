"""Every error flashctl raises on purpose. Each carries a one-line message and a hint (the fix).

The CLI prints ``message`` and ``hint`` and exits with ``exit_code``; with ``--debug`` it shows
the traceback. The library never prints or exits.
"""

from __future__ import annotations


class FlashctlError(Exception):
    """Base class: a problem the user can fix. ``exit_code`` 1 = error, 2 = usage/config."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class ConfigError(FlashctlError):
    """flashctl.toml, a --set override or a component's options are wrong."""

    exit_code = 2


class UnknownComponentError(ConfigError):
    """A backbone/decoder/augmentation/metric/format name no plugin registered."""


class DuplicateComponentError(FlashctlError):
    """Two plugins registered the same component name."""


class InvalidActionNameError(FlashctlError):
    """An action name that is not a plain slug (``[a-z0-9_-]+``)."""

    exit_code = 2


class MotionNotFoundError(FlashctlError):
    """The motion library has no action of that name."""


class MotionNotTrainedError(FlashctlError):
    """The action exists but has no weights yet."""


class IncompatibleMotionError(FlashctlError):
    """A motion trained for another backbone, base weights or geometry."""


class LibraryBusyError(FlashctlError):
    """Another process holds the per-action lock."""


class VideoReadError(FlashctlError):
    """A clip that is missing, empty, truncated or not a video."""


class ImageReadError(FlashctlError):
    """A reference image that is missing or not an image."""


class FFmpegNotFoundError(FlashctlError):
    """No ffmpeg binary on PATH and no imageio-ffmpeg wheel."""


class WeightsNotFoundError(FlashctlError):
    """Pretrained weights could not be resolved to a local folder."""


class TrainingDivergedError(FlashctlError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class ManifestError(ConfigError):
    """A motion.toml that does not parse or does not validate."""


class StaleCacheError(FlashctlError):
    """prepare's frame cache is missing, unreadable, or was made from other clips or geometry."""


class VideoWriteError(FlashctlError):
    """ffmpeg failed to encode an output video."""


class OutputPathError(FlashctlError):
    """``-o FILE`` that cannot hold what was asked for (several images, another format)."""

    exit_code = 2


class MetricsFileError(FlashctlError):
    """A metrics.json that is missing, unreadable, or not what `flashctl eval` writes."""


class WeightsFileError(FlashctlError):
    """A weights file that cannot be read, or was saved for another model layout."""


class CheckpointError(FlashctlError):
    """A training checkpoint that is unreadable, or was made with other settings, clips or process count."""


class StorageError(FlashctlError, OSError):
    """The disk is full, or a folder flashctl writes to is read-only or not a folder.

    Also an ``OSError`` (with the cause's ``errno`` and ``filename`` where the library raises it), so callers
    that caught the raw error still do.
    """


def short_value(value: object) -> str:
    """``repr(value)`` cut to 60 characters, for a message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def storage_error(exc: OSError) -> FlashctlError | None:
    """A one-line :class:`StorageError` for an ``OSError`` a user can fix (disk full, read-only, a file in the way)."""
    import errno
    import shutil
    from pathlib import Path

    where = Path(exc.filename) if exc.filename else None
    if exc.errno == errno.ENOSPC:
        folder = next((p for p in ([where] + list(where.parents) if where else []) if p.is_dir()), Path.cwd())
        free = shutil.disk_usage(folder).free / 2**20
        return StorageError(f"no space left on the device holding {folder} ({free:.1f} MB free) while writing "
                            f"{where or 'a file'}",
                            hint="free some space there (a motion save needs about the size of its previous "
                                 "version), or point library.path / --out elsewhere")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StorageError(f"cannot write {where or 'a file'}: {exc.strerror}",
                            hint="make that folder writable, or point library.path / --out at one that is")
    if exc.errno in (errno.ENOTDIR, errno.EEXIST) and where is not None:
        return StorageError(f"{where}: a file is in the way where a folder is needed ({exc.strerror})",
                            hint="pass a folder path, or move the file away")
    return None
