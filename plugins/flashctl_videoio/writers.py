"""Factories for the built-in video formats; flashctl.video is imported only when one is built."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable

Write = Callable[[Path, Any, float], Path]  # write(path, frames (F, H, W, 3) uint8, fps) -> path


def mp4(options: Any, ctx: Any) -> Write:
    from flashctl.video import write_mp4

    return partial(write_mp4, crf=options.crf)


def gif(options: Any, ctx: Any) -> Write:
    from flashctl.video import write_gif

    return partial(write_gif, loop=options.loop)


def apng(options: Any, ctx: Any) -> Write:
    from flashctl.video import write_apng

    return partial(write_apng, loop=options.loop)


def png(options: Any, ctx: Any) -> Write:
    from flashctl.video import write_png_sequence

    def write(path: Path, frames: Any, fps: float) -> Path:
        return write_png_sequence(path, frames)  # a PNG folder has no frame rate

    return write
