"""Synthetic media for tests: tiny clips of a moving square, images, and broken files.

``make_clip`` draws a white square on a dark background that slides from the left edge to the
right edge over the clip, so a test can check orientation and timing with ``square_centre``.
Clips are encoded with PyAV (no ffmpeg binary needed); import as ``from media import make_clip``.
"""

from __future__ import annotations

import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image


def square_frames(frames: int = 12, size: tuple[int, int] = (40, 30)) -> np.ndarray:
    """(F, H, W, 3) uint8: a white square moving left to right on dark grey; size is (W, H)."""
    width, height = size
    side = max(4, min(width, height) // 3)
    video = np.full((frames, height, width, 3), 40, np.uint8)  # (F, H, W, 3)
    top = (height - side) // 2
    for i in range(frames):
        left = round(i * (width - side) / max(frames - 1, 1))
        video[i, top:top + side, left:left + side] = 255
    return video


def square_centre(frame: np.ndarray) -> tuple[float, float]:
    """(row, column) of the bright pixels' centroid in one (H, W, 3) frame."""
    rows, cols = np.nonzero(frame.mean(axis=-1) > 160)
    return float(rows.mean()), float(cols.mean())


def make_clip(path: Path, frames: int = 12, size: tuple[int, int] = (40, 30), fps: float = 10,
              codec: str = "libx264", rotate: int | None = None, times: list[float] | None = None) -> Path:
    """Encode ``square_frames`` into ``path`` (the container follows the extension).

    ``rotate`` stores display-matrix rotation in degrees counter-clockwise (what ffprobe reports as
    ``rotation``); ``times`` gives each frame's presentation time in seconds (variable frame rate).
    Odd sizes work with libx264 (4:4:4 is used then); ``codec="gif"`` writes a paletted GIF.
    """
    path = Path(path)
    video = square_frames(len(times) if times is not None else frames, size)
    width, height = size
    pix_fmt = "rgb8" if codec == "gif" else "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    time_base = Fraction(1, 1000)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if times is not None:
            stream.time_base = time_base
        if rotate:
            stream.set_display_rotation(rotate)
        for i, image in enumerate(video):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = round(times[i] * 1000), time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def make_image(path: Path, size: tuple[int, int] = (40, 30), mode: str = "RGB",
               exif_orientation: int | None = None) -> Path:
    """A still with a white block in the top-left corner (W, H = size); format from the extension.

    ``mode="RGBA"`` makes the right half fully transparent; ``exif_orientation`` (1-8) is stored
    in the EXIF Orientation tag (JPEG/PNG/WebP).
    """
    width, height = size
    pixels = np.full((height, width, 4), (200, 30, 30, 255), np.uint8)  # (H, W, 4) red, opaque
    pixels[: height // 3, : width // 3, :3] = 255
    if mode == "RGBA":
        pixels[:, width // 2:, 3] = 0
    image = Image.fromarray(pixels, "RGBA").convert(mode)
    exif = Image.Exif()
    if exif_orientation is not None:
        exif[0x0112] = exif_orientation
    image.save(path, exif=exif)
    return Path(path)


def make_audio(path: Path, seconds: float = 0.2) -> Path:
    """A WAV file with a tone and no video stream."""
    rate = 8000
    tone = (np.sin(np.arange(int(rate * seconds)) * 0.3) * 8000).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(tone.tobytes())
    return Path(path)


def truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut ``path`` to the first ``keep`` fraction of its bytes, like an interrupted download."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep)])
    return Path(path)
