"""flashctl built-in plugin: output video formats (mp4, gif, animated PNG, a folder of PNGs).

Each factory returns ``write(path, frames, fps) -> Path`` for ``(F, H, W, 3)`` uint8 frames,
built on :mod:`flashctl.video`'s atomic writers; the code lives in :mod:`.writers`.
"""

from __future__ import annotations

from pydantic import Field

from flashctl import hookimpl
from flashctl.registry import NoOptions, Options

from . import writers


class Mp4Options(Options):
    crf: int = Field(18, ge=0, le=51, description="x264 quality: 0 lossless, 18 visually lossless, 51 worst")


class GifOptions(Options):
    loop: int = Field(0, ge=0, description="times to play; 0 loops forever")


@hookimpl
def register_video_formats(register):
    register("mp4", writers.mp4, options=Mp4Options, extensions=(".mp4",),
             summary="H.264 mp4 (yuv420p, padded to even size)")
    register("gif", writers.gif, options=GifOptions, extensions=(".gif",), summary="animated GIF")
    register("apng", writers.apng, options=GifOptions, extensions=(".png",),
             summary="animated PNG, one lossless file (what -o NAME.png writes)")
    register("png", writers.png, options=NoOptions, extensions=("",),
             summary="a folder of numbered PNGs (frame_0000.png, ...), lossless")
