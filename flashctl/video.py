"""The one place video layouts and IO meet: probing, decoding, writing, and the tensor layout.

Frames at the IO boundary are ``(F, H, W, 3)`` uint8 RGB; inside models ``(F, 3, H, W)`` float in
[-1, 1]. :func:`frames_to_tensor` / :func:`tensor_to_frames` are the only conversions between them.
Decoding goes through ffmpeg (ffmpeg-python), which applies rotation metadata; probing uses
ffprobe when it exists and PyAV otherwise. Rotation is reported as ffprobe does: degrees
counter-clockwise the frames are turned for display. Needs ffmpeg 5.1 or newer.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import FFmpegNotFoundError, ImageReadError, VideoReadError, VideoWriteError
from .files import atomic_path

if TYPE_CHECKING:
    import torch

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".gif", ".wmv", ".flv", ".3gp")
QUIET = ("-nostdin", "-v", "error")
BROKEN_VIDEO_HINT = "the file may be truncated or not a video; re-export or re-download it"


def find_ffmpeg() -> str:
    """``ffmpeg`` on PATH, else the binary bundled with imageio-ffmpeg."""
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        raise FFmpegNotFoundError("no ffmpeg found: it is not on PATH and imageio-ffmpeg is not installed",
                                  hint="apt-get install ffmpeg, or pip install imageio-ffmpeg") from None


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int  # as displayed, after rotation
    height: int
    fps: float  # average frame rate
    duration: float  # seconds
    frames: int  # exact when the container records it, else duration * fps
    codec: str
    rotation: int  # degrees counter-clockwise, 0/90/180/270


def _check_readable(path: Path, error: type[VideoReadError] | type[ImageReadError], what: str) -> None:
    """Missing, folder, empty and unreadable files, and names ffmpeg cannot take, each with its own message."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise error(f"{shown}: the file name is not UTF-8",
                    hint=f"rename the {what} (UTF-8 letters, digits, '-', '_')") from None
    try:
        if not path.exists():
            raise error(f"{path}: no such file", hint="check the path")
        if path.is_dir():
            raise error(f"{path} is a folder, not a {what} file", hint=f"pass a {what} file")
        if path.stat().st_size == 0:
            raise error(f"{path} is empty (0 bytes)", hint=f"re-export or re-download the {what}")
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise error(f"{path}: cannot read it ({exc.strerror or exc})", hint="check the file's permissions") from None


def _rate(text: str | None) -> float:
    try:
        return float(Fraction(text)) if text else 0.0
    except (ValueError, ZeroDivisionError):
        return 0.0


def _last_line(stderr: bytes | None, path: Path) -> str:
    lines = [ln.strip() for ln in (stderr or b"").decode("utf-8", "replace").splitlines() if ln.strip()]
    line = lines[-1] if lines else "no details"
    return line.removeprefix(f"{path}: ")


def _still_image(format_name: str) -> bool:
    return format_name == "image2" or format_name.endswith("_pipe")


def _no_video(path: Path, kinds: list[str]) -> VideoReadError:
    return VideoReadError(f"{path} has no video stream (streams: {', '.join(kinds) or 'none'})",
                          hint="pass a file that contains video")


def _still(path: Path, codec: str) -> VideoReadError:
    return VideoReadError(f"{path} is a still image ({codec}), not a video",
                          hint="pass a video clip; still images go to `flashctl animate --image`")


def _info(path: Path, width: int, height: int, fps: float, duration: float, frames: int, codec: str,
          rotation: float) -> VideoInfo:
    rotation = round(rotation) % 360
    if rotation in (90, 270):
        width, height = height, width
    frames = frames if frames > 0 else round(duration * fps)
    return VideoInfo(path, width, height, fps, duration, frames, codec, rotation)


def _probe_ffprobe(path: Path, exe: str) -> VideoInfo:
    import ffmpeg

    try:
        data = ffmpeg.probe(str(path), cmd=exe)
    except ffmpeg.Error as exc:
        raise VideoReadError(f"{path}: not a readable video ({_last_line(exc.stderr, path)})",
                             hint=BROKEN_VIDEO_HINT) from None
    fmt = data.get("format", {})
    streams = data.get("streams", [])
    video = [s for s in streams if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")
             and s.get("width")]
    if not video:
        raise _no_video(path, [s.get("codec_type", "?") for s in streams])
    s = video[0]
    if _still_image(fmt.get("format_name", "")):
        raise _still(path, s.get("codec_name", "?"))
    rotation = next((sd["rotation"] for sd in s.get("side_data_list", []) if "rotation" in sd),
                    -float(s.get("tags", {}).get("rotate", 0)))  # the legacy tag counts clockwise
    fps = _rate(s.get("avg_frame_rate")) or _rate(s.get("r_frame_rate"))
    duration = float(s.get("duration") or fmt.get("duration") or 0.0)
    return _info(path, int(s["width"]), int(s["height"]), fps, duration, int(s.get("nb_frames") or 0),
                 s.get("codec_name", "?"), float(rotation))


def _probe_pyav(path: Path) -> VideoInfo:
    import av

    try:
        with av.open(str(path)) as container:
            video = [s for s in container.streams.video
                     if not s.disposition & av.stream.Disposition.attached_pic and s.codec_context.width]
            if not video:
                raise _no_video(path, [s.type for s in container.streams])
            s = video[0]
            if _still_image(container.format.name):
                raise _still(path, s.codec_context.name)
            first = next(container.decode(s), None)
            if first is None:
                raise VideoReadError(f"{path}: no decodable frames", hint=BROKEN_VIDEO_HINT)
            fps = float(s.average_rate or s.guessed_rate or 0)
            duration = float(s.duration * s.time_base) if s.duration else (container.duration or 0) / 1e6
            return _info(path, s.codec_context.width, s.codec_context.height, fps, duration, s.frames,
                         s.codec_context.name, float(first.rotation))
    except av.error.FFmpegError as exc:
        raise VideoReadError(f"{path}: not a readable video ({exc.strerror or exc})", hint=BROKEN_VIDEO_HINT) from None


def probe(path: Path | str) -> VideoInfo:
    """Size (as displayed), frame rate, duration, frame count, codec and rotation of a video file."""
    path = Path(path)
    _check_readable(path, VideoReadError, "video")
    exe = shutil.which("ffprobe")
    return _probe_ffprobe(path, exe) if exe else _probe_pyav(path)


def read_frames(path: Path | str, *, fps: float | None = None, size: int | None = None, start: float = 0.0,
                max_frames: int | None = None) -> np.ndarray:
    """Decode to ``(F, H, W, 3)`` uint8 RGB, upright.

    ``start`` trims seconds from the beginning, ``fps`` resamples to a constant rate (variable
    frame rate clips included), ``size`` takes the centre square and resizes it to size x size,
    ``max_frames`` stops early. A clip with fewer frames than ``max_frames`` returns what it has; one
    that decodes to fewer frames than its container declares is refused as truncated.
    """
    import ffmpeg

    path = Path(path)
    info = probe(path)
    stream = ffmpeg.input(str(path), **({"ss": start} if start else {}))["v:0"]
    width, height = info.width, info.height
    if fps:
        stream = stream.filter("fps", fps=fps)
    if size:
        side = min(width, height)
        stream = stream.filter("crop", side, side).filter("scale", size, size, flags="bicubic")
        width = height = size
    args: dict[str, Any] = {"format": "rawvideo", "pix_fmt": "rgb24", "fps_mode": "passthrough"}
    if max_frames:
        args["frames:v"] = max_frames
    try:
        raw, _ = stream.output("pipe:", **args).global_args(*QUIET).run(
            cmd=find_ffmpeg(), capture_stdout=True, capture_stderr=True)
    except ffmpeg.Error as exc:
        raise VideoReadError(f"{path}: ffmpeg could not decode it ({_last_line(exc.stderr, path)})",
                             hint=BROKEN_VIDEO_HINT) from None
    frame_bytes = width * height * 3
    if len(raw) % frame_bytes:
        raise VideoReadError(f"{path}: decoded {len(raw)} bytes, not whole {width}x{height} frames",
                             hint="re-encode the clip with square pixels (ffmpeg -i IN -vf setsar=1 OUT)")
    if not raw:
        raise VideoReadError(f"{path}: no frames after start={start:g}s (the clip is {info.duration:.2f}s long)",
                             hint="lower prepare.start or use a longer clip")
    frames = np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3).copy()  # (F, H, W, 3)
    declared = max(info.duration - start, 0.0) * (fps or info.fps)  # what the container promises at this rate
    if max_frames:
        declared = min(declared, max_frames)
    if len(frames) < math.floor(declared * 0.95) - 1:  # a frame of rounding, 5% of timestamp slack
        raise VideoReadError(f"{path}: truncated: {len(frames)} frames decode, but the container declares "
                             f"{info.duration:.2f}s ({math.floor(declared)} frames at {fps or info.fps:g} fps"
                             f"{f' after start={start:g}s' if start else ''})", hint=BROKEN_VIDEO_HINT)
    return frames


FITS = ("crop", "pad", "stretch")


def fit_square(image: np.ndarray, size: int, fit: str = "crop") -> np.ndarray:
    """An ``(H, W, 3)`` uint8 image made ``(size, size, 3)``.

    ``crop``: the centre square, resized. ``pad``: the whole image, resized to fit and centred on a
    square of its border's median colour. ``stretch``: resized to the square, aspect ratio ignored.
    """
    from PIL import Image

    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    image = np.ascontiguousarray(image[..., :3])
    h, w = image.shape[:2]
    if fit == "stretch" or h == w:
        return np.array(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))  # (S, S, 3)
    if fit == "crop":
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        crop = Image.fromarray(np.ascontiguousarray(image[top:top + side, left:left + side]))  # (side, side, 3)
        return np.array(crop.resize((size, size), Image.Resampling.BICUBIC))  # (S, S, 3), writable
    side = max(h, w)
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])  # (2W + 2H, 3)
    canvas = np.empty((side, side, 3), np.uint8)
    canvas[:] = np.median(border, axis=0).astype(np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    canvas[top:top + h, left:left + w] = image  # (side, side, 3)
    return np.array(Image.fromarray(canvas).resize((size, size), Image.Resampling.BICUBIC))


def describe_fit(height: int, width: int, fit: str) -> str | None:
    """One line on what :func:`fit_square` does to a ``height`` x ``width`` image; None when nothing is lost."""
    if height == width or fit == "stretch":
        return None if height == width else f"{width}x{height} stretched to a square (aspect ratio not kept)"
    short, long = sorted((height, width))
    lost = 100 * (long - short) / long
    cut = "left and right" if width > height else "top and bottom"
    if fit == "crop":
        return (f"{width}x{height} cropped to its centre {short}x{short}: {lost:.0f}% of the image cut off "
                f"({cut}; --fit pad keeps all of it)")
    bands = "top and bottom" if width > height else "left and right"
    return f"{width}x{height} padded to {long}x{long}: {lost:.0f}% of the frame is padding ({bands})"


def read_image(path: Path | str, size: int | None = None) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB, EXIF orientation applied, transparency composited on white.

    With ``size``: the centre square resized to size x size (as :func:`read_frames` does).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    _check_readable(path, ImageReadError, "image")
    try:
        with Image.open(path) as opened:
            image = _eight_bit(ImageOps.exif_transpose(opened), path)
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                rgba = image.convert("RGBA")
                image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
            image = image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: not a readable image ({exc})",
                             hint="pass a PNG, JPEG or WebP file; re-export it if it is damaged") from None
    array = np.asarray(image, dtype=np.uint8).copy()  # (H, W, 3)
    return fit_square(array, size) if size else array


def _eight_bit(image: Any, path: Path) -> Any:
    """16-bit ('I;16*', 'I') and float ('F') grey scaled to 8 bits; Pillow's own convert clips them to white.

    'I;16*' is scaled by 1/257; 'I' by 1/257 when above 255; 'F' must lie in [0, 1] or [0, 255]. Else refused.
    """
    from PIL import Image

    if not (image.mode.startswith("I") or image.mode == "F"):
        return image
    values = np.asarray(image, dtype=np.float64)  # (H, W)
    low, high = (values.min(), values.max()) if values.size else (0.0, 0.0)
    if image.mode == "F":
        scale = 255.0 if high <= 1 else 1.0 if high <= 255 else None
    elif image.mode == "I":  # 32-bit: 8-bit or 16-bit values
        scale = 1.0 if high <= 255 else 1 / 257 if high <= 65535 else None
    else:
        scale = 1 / 257
    if scale is None or low < 0:
        raise ImageReadError(f"{path}: {image.mode!r} image with values {low:g}..{high:g} has no known 8-bit scale",
                             hint="export it as an 8-bit (or 16-bit) RGB or greyscale PNG")
    return Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8))


def _frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
        raise ValueError(f"frames must be (F, H, W, 3) uint8 with F >= 1, got {frames.shape} {frames.dtype}")
    return np.ascontiguousarray(frames)


def write_mp4(path: Path | str, frames: np.ndarray, fps: float, *, crf: int = 18) -> Path:
    """H.264 (yuv420p) mp4, padded to even width and height; written atomically."""
    import ffmpeg

    frames = _frames(frames)
    _, height, width, _ = frames.shape
    stream = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}", framerate=fps)
    if width % 2 or height % 2:
        stream = stream.filter("pad", width + width % 2, height + height % 2)
    path = Path(path)
    with atomic_path(path) as tmp:
        try:
            stream.output(str(tmp), format="mp4", vcodec="libx264", pix_fmt="yuv420p", crf=crf,
                          movflags="+faststart").global_args(*QUIET).run(
                cmd=find_ffmpeg(), input=frames.tobytes(), capture_stdout=True, capture_stderr=True)
        except ffmpeg.Error as exc:
            raise VideoWriteError(f"{path}: ffmpeg could not encode it ({_last_line(exc.stderr, tmp)})",
                                  hint="check that this ffmpeg has libx264 (`ffmpeg -encoders`)") from None
    return path


def write_gif(path: Path | str, frames: np.ndarray, fps: float, *, loop: int = 0) -> Path:
    """Animated GIF (loop=0 loops forever); written atomically."""
    return _write_animated(path, frames, fps, loop, "GIF")


def write_apng(path: Path | str, frames: np.ndarray, fps: float, *, loop: int = 0) -> Path:
    """Animated PNG (lossless, one file; browsers play it; loop=0 loops forever); written atomically."""
    return _write_animated(path, frames, fps, loop, "PNG")


def _write_animated(path: Path | str, frames: np.ndarray, fps: float, loop: int, fmt: str) -> Path:
    from PIL import Image

    images = [Image.fromarray(f) for f in _frames(frames)]
    path = Path(path)
    with atomic_path(path) as tmp:
        images[0].save(tmp, format=fmt, save_all=True, append_images=images[1:],
                       duration=max(1, round(1000 / fps)), loop=loop)
    return path


def write_png_sequence(folder: Path | str, frames: np.ndarray) -> Path:
    """A folder of ``frame_0000.png``...; replaces an existing folder of that name as one unit."""
    from PIL import Image

    frames = _frames(frames)
    folder = Path(folder)
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(tmp / f"frame_{i:04d}.png")
    return folder


LABEL_BAND = 12  # px: the band under each row of frames holding their indices, and the source line's band
GUTTER = 2  # px of white between neighbouring frames in a row


def contact_sheet(frames: np.ndarray, columns: int = 8, *, source: str | None = None) -> np.ndarray:
    """Frames left to right, top to bottom, each with its index (0, 1, ...) in a band under it.

    ``source`` (e.g. ``"me.png · bow"``) is written on a line above the frames. Returns
    ``(S + rows*(H+B), cols*(W+G) - G, 3)`` uint8 with ``B`` = :data:`LABEL_BAND`, ``G`` = :data:`GUTTER`
    and ``S`` = ``B`` when there is a source line, else 0; the background and empty cells are white.
    """
    from PIL import Image, ImageDraw, ImageFont

    frames = _frames(frames)
    count, height, width, _ = frames.shape
    cols = max(1, min(columns, count))
    rows = math.ceil(count / cols)
    top, cell, pitch = (LABEL_BAND if source else 0), height + LABEL_BAND, width + GUTTER
    sheet = np.full((top + rows * cell, cols * pitch - GUTTER, 3), 255, np.uint8)  # (S+rows*(H+B), cols*(W+G)-G, 3)
    for i, frame in enumerate(frames):
        r, c = divmod(i, cols)
        sheet[top + r * cell:top + r * cell + height, c * pitch:c * pitch + width] = frame
    image = Image.fromarray(sheet)
    draw, font = ImageDraw.Draw(image), ImageFont.load_default()
    for i in range(count):
        r, c = divmod(i, cols)
        x = c * pitch + (width - draw.textlength(str(i), font=font)) / 2
        draw.text((x, top + r * cell + height), str(i), fill=(70, 70, 70), font=font)
    if source:
        draw.text((2, 0), source, fill=(0, 0, 0), font=font)
    return np.asarray(image)


def change_map(frames: np.ndarray) -> np.ndarray:
    """Mean absolute frame-to-frame change per pixel, in grey levels: ``(F, H, W, 3)`` uint8 -> ``(H, W)`` float32."""
    return np.abs(np.diff(_frames(frames).astype(np.float32), axis=0)).mean(axis=(0, 3))


def frames_to_tensor(frames: np.ndarray) -> "torch.Tensor":
    """``(F, H, W, 3)`` uint8 -> ``(F, 3, H, W)`` float32 in [-1, 1]."""
    import torch

    x = torch.from_numpy(_frames(frames))  # (F, H, W, 3) uint8
    return x.permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (F, 3, H, W) in [-1, 1]


def tensor_to_frames(video: "torch.Tensor") -> np.ndarray:
    """``(F, 3, H, W)`` float in [-1, 1] -> ``(F, H, W, 3)`` uint8 (clamped, rounded)."""
    import torch

    if video.ndim != 4 or video.shape[1] != 3:
        raise ValueError(f"video must be (F, 3, H, W), got {tuple(video.shape)}")
    x = ((video.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round()  # (F, 3, H, W) in [0, 255]
    return x.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()  # (F, H, W, 3)
