"""``animate``: load a trained motion once and turn still images into videos of that action."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..context import context_for
from ..errors import MotionNotTrainedError, OutputPathError
from ..progress import NullReporter, Reporter
from ..model.motion_files import CONFIG_FILE

if TYPE_CHECKING:
    from ..config import FlashConfig
    from ..library import MotionLibrary
    from ..model.motion_model import MotionModel
    from ..plugins import PluginHost


@dataclass
class AnimateResult:
    image: Path
    videos: list[Path]  # the primary outputs, one per format
    extras: list[Path]  # contact sheets
    frames: int
    seconds: float

    @property
    def outputs(self) -> list[Path]:
        return [*self.videos, *self.extras]


class Animator:
    """A loaded motion: backbone + LoRA + decoder + prompt embeddings, ready to render many images."""

    def __init__(self, model: MotionModel, action: str, weights: dict[str, Any], animate: Any, prompt_emb: Any,
                 negative_emb: Any) -> None:
        self.model, self.action, self.weights, self.settings = model, action, weights, animate
        self.frames, self.size, self.fps = int(weights["frames"]), int(weights["size"]), float(weights["fps"])
        self.prompt_emb, self.negative_emb = prompt_emb, negative_emb

    def render(self, image: np.ndarray, seed: int, fit: str = "crop",
               on_step: Callable[[int, int], None] | None = None) -> np.ndarray:
        """``(H, W, 3)`` uint8 -> ``(F, S, S, 3)`` uint8 video of the motion starting at the image.

        ``fit`` makes a non-square image square: ``crop`` (centre), ``pad`` or ``stretch`` (:func:`fit_square`).
        ``on_step(i, total)`` is called after each denoising step.
        """
        import torch

        from ..video import fit_square, frames_to_tensor, tensor_to_frames

        reference = frames_to_tensor(fit_square(image, self.size, fit)[None])  # (1, 3, S, S)
        video = self.model.sample(reference, self.prompt_emb, self.frames, self.settings, self.negative_emb,
                                  torch.Generator().manual_seed(seed), on_step)  # (1, F, 3, S, S)
        return tensor_to_frames(video[0].float().cpu())


def load_animator(config: FlashConfig, library: MotionLibrary, action: str, host: PluginHost, reporter: Reporter = NullReporter(),
                  version: Path | None = None) -> Animator:
    """Build the configured backbone (``[runtime]`` applied), check the motion fits it, load its LoRA and decoder.

    ``version``: the motion version folder to load (default: the live one, resolved once here).
    """
    from ..model.motion_model import MotionModel

    library.require(action)
    version = library.version_dir(action) if version is None else Path(version)  # every file from the same save
    weights_dir = version / "weights"
    if not (weights_dir / CONFIG_FILE).is_file():
        raise MotionNotTrainedError(f"motion '{action}' has no weights yet (no {weights_dir / CONFIG_FILE})",
                                    hint=f"train it first: flashctl train {action}")
    library.check_version(action, version)
    model, weights = MotionModel.from_motion(weights_dir, config, host, context_for(config, host, reporter), action)
    settings = config.animate
    prompt_emb = model.backbone.encode_prompt([weights["prompt"]])  # (1, seq, dim)
    negative_emb = model.backbone.encode_prompt([settings.negative_prompt]) if settings.guidance_scale > 1 else None
    return Animator(model, action, weights, settings, prompt_emb, negative_emb)


def animate(config: FlashConfig, library: MotionLibrary, action: str, images: list[Path], out_dir: Path, host: PluginHost, *,
            reporter: Reporter = NullReporter(), formats: list[str] | None = None,
            seed: int | None = None, fit: str = "crop", overwrite: bool = False, size: int | None = None,
            upscale: bool = False, on_result: Callable[[AnimateResult], None] | None = None) -> list[AnimateResult]:
    """Render every image with one model load; write ``<out_dir>/<name>.<ext>`` per format (+ contact sheet).

    ``out_dir`` named like a file of a known video format (``clip.mp4``, ``clip.gif``, ``clip.png``) and
    not an existing folder: the one image's video is written to exactly that file, in the format its
    extension names, without a contact sheet; several images are refused. Names are distinct per
    input (``coffee.jpg`` and ``coffee.webp`` -> ``coffee`` and ``coffee-webp``); an existing output is
    replaced only with ``overwrite``, else the next free ``NAME-1``, ``NAME-2``... is used and a note
    says so. ``on_result`` is called as soon as each image's files are written.

    Videos come at the model's native size unless ``size`` (the long side, in pixels) or ``upscale`` (the
    input image's size) asks for another: see :func:`output_shape` and :func:`resize_video`. Contact
    sheets stay at the model's size. Progress is reported in denoising steps, over all images.

    Under ``accelerate launch`` (:mod:`flashctl.sharding`) every process checks every image, the main one
    picks the free output names for all, and each renders and writes only its share, on its own device.
    The main process calls ``on_result`` for its own images as they are written, then for the others'
    once they are gathered, and returns every result in input order; the others return their own.
    """
    from ..files import atomic_write
    from ..sharding import current_shard
    from ..video import contact_sheet, describe_fit, read_image

    shard = current_shard(config)
    config, reporter = shard.configure(config), shard.reporter(reporter)
    out = Path(out_dir)
    file_format = output_file_format(out, host)
    if file_format is not None:
        if len(images) != 1:
            raise OutputPathError(f"-o {out} names one file, but {len(images)} images were given",
                                  hint=f"pass a folder instead (-o {out.with_suffix('')}) to write one video per image")
        if formats and list(formats) != [file_format]:
            raise OutputPathError(f"-o {out} names a {file_format} file, but --format {' '.join(formats)} was asked for",
                                  hint="drop --format, or name the file with its extension")
        formats = [file_format]
    if size is not None and upscale:
        raise OutputPathError(f"--size {size} and --upscale both set the output size", hint="pass one of them")
    if size is not None and size < 8:
        raise OutputPathError(f"--size {size}: too small", hint="pass the long side in pixels, 8 or more")
    formats = list(formats or config.animate.formats)
    writers = [_writer(host, config, name) for name in formats]  # unknown formats fail before any work
    mine = set(shard.take(len(images)))
    sources = []  # (path, image or None where another process renders it)
    for index, path in enumerate(map(Path, images)):
        image = read_image(path)  # every process reads every image: a bad one fails before the model loads
        sources.append((path, image if index in mine else None))
    out_dir = out.parent if file_format is not None else out
    out_dir.mkdir(parents=True, exist_ok=True)  # so does an output folder that is a file or read-only
    sheets = config.animate.contact_sheet and file_format is None
    bases, notes = shard.broadcast(_bases(out, out_dir, file_format, [p for p, _ in sources], writers, sheets, overwrite)
                                   if shard.main else None)  # one process picks every free name
    for note in notes:
        reporter.note(note, level="warning")
    library.require(action)
    version = shard.broadcast(library.version_dir(action) if shard.main else None)  # every process: the same save
    animator = load_animator(config, library, action, host, reporter, version) if mine else None
    seed = config.animate.seed if seed is None else seed
    results: list[tuple[int, AnimateResult]] = []
    reporter.start("animate (denoising steps)", total=len(mine) * config.animate.steps)
    for number, index in enumerate(sorted(mine), 1):
        (path, image), base = sources[index], bases[index]
        t0 = time.perf_counter()
        change = describe_fit(image.shape[0], image.shape[1], fit)
        if change is not None:
            reporter.note(f"{path}: {change}")
        frames = animator.render(image, seed, fit, lambda i, n: reporter.advance(1, image=number))  # (F, S, S, 3)
        shape = output_shape(image.shape[0], image.shape[1], fit, size, upscale)
        video = frames if shape is None else resize_video(frames, image.shape[0], image.shape[1], fit, shape)
        videos = [Path(write(Path(f"{base}{ext}"), video, animator.fps)) for write, ext in writers]
        extras = []
        if sheets:
            sheet = contact_sheet(frames, source=f"{path.name} · {action}")  # labelled (rows, cols, 3) uint8
            extras.append(atomic_write(Path(f"{base}_sheet.png"), _png_bytes(sheet)))
        results.append((index, AnimateResult(path, videos, extras, len(frames), time.perf_counter() - t0)))
        if on_result is not None and shard.main:
            on_result(results[-1][1])
    reporter.finish()
    shares = shard.gather(results)
    if shares is None:  # another process: the main one reports
        return [result for _, result in results]
    everyone = sorted((pair for share in shares for pair in share), key=lambda pair: pair[0])
    if on_result is not None:
        for index, result in everyone:
            if index not in mine:
                on_result(result)
    return [result for _, result in everyone]


def _bases(out: Path, out_dir: Path, file_format: str | None, images: list[Path], writers: list[tuple[Any, str]],
           sheets: bool, overwrite: bool) -> tuple[list[Path], list[str]]:
    """Every image's output base (``out_dir/coffee``) and the notes on names moved aside (:func:`_free_bases`)."""
    extensions = [ext for _, ext in writers]
    if file_format is not None:
        return _free_bases([out.with_suffix("")], extensions, False, overwrite)
    return _free_bases([out_dir / n for n in distinct_names(images)], extensions, sheets, overwrite)


def output_shape(height: int, width: int, fit: str, size: int | None, upscale: bool) -> tuple[int, int] | None:
    """The (height, width) of the output video for a ``height`` x ``width`` input; None = the model's square.

    ``size`` is the long side; ``upscale`` takes the input's own size (its long side; with ``crop``, the side
    of the centre square the model saw). ``crop`` gives a square; ``pad`` and ``stretch`` the input's aspect
    ratio (the padding is cut away, the stretch undone).
    """
    if size is None and not upscale:
        return None
    long = size if size is not None else (min(height, width) if fit == "crop" else max(height, width))
    if fit == "crop" or height == width:
        return long, long
    scale = long / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_video(frames: np.ndarray, height: int, width: int, fit: str, shape: tuple[int, int]) -> np.ndarray:
    """``(F, S, S, 3)`` uint8 frames of a ``height`` x ``width`` input made with ``fit`` -> ``(F, *shape, 3)``.

    Plain resampling (PIL's Lanczos filter, frame by frame): no detail is invented. ``pad`` scales the padded
    square so the image inside it is ``shape``, then cuts the padding away (:func:`flashctl.video.fit_square`
    centres the image).
    """
    from PIL import Image

    out_h, out_w = shape
    if fit == "stretch" or fit == "crop" or height == width:
        canvas, top, left = (out_w, out_h), 0, 0
    else:
        side = max(out_h, out_w)
        canvas, top, left = (side, side), (side - out_h) // 2, (side - out_w) // 2
    resized = [np.asarray(Image.fromarray(f).resize(canvas, Image.Resampling.LANCZOS)) for f in frames]
    return np.stack(resized)[:, top:top + out_h, left:left + out_w]  # (F, out_h, out_w, 3)


def output_file_format(out: Path, host: PluginHost) -> str | None:
    """The video format ``out`` names as a file (``.mp4`` -> mp4, ``.png`` -> apng), or None for a folder."""
    if out.is_dir() or not out.suffix:
        return None
    by_ext = {ext.lower(): spec.name for spec in host.registry.specs("video_format")
              for ext in spec.traits.extensions if ext}
    return by_ext.get(out.suffix.lower())


def distinct_names(images: list[Path]) -> list[str]:
    """One output name per image: its stem, or ``stem-ext`` (then ``stem-ext-2``...) where stems clash.

    Compared case-insensitively, so the names stay distinct on macOS and Windows file systems too.
    """
    counts: dict[str, int] = {}
    for p in images:
        counts[p.stem.lower()] = counts.get(p.stem.lower(), 0) + 1
    used: set[str] = set()
    names = []
    for p in images:
        name = p.stem
        if counts[p.stem.lower()] > 1 and name.lower() in used:
            name = f"{p.stem}-{p.suffix.lstrip('.').lower() or 'image'}"
            n, plain = 2, name
            while name.lower() in used or name.lower() in counts:
                name, n = f"{plain}-{n}", n + 1
        used.add(name.lower())
        names.append(name)
    return names


def _free_bases(bases: list[Path], extensions: list[str], sheets: bool,
                overwrite: bool) -> tuple[list[Path], list[str]]:
    """Each base (``out/coffee``) or, where one of its outputs exists and not ``overwrite``, ``coffee-N``."""
    def files(base: Path) -> list[Path]:
        return [Path(f"{base}{ext}") for ext in extensions] + ([Path(f"{base}_sheet.png")] if sheets else [])

    taken = {str(b).lower() for b in bases}
    free, notes = [], []
    for base in bases:
        existing = [f for f in files(base) if f.exists() or f.is_symlink()]
        if overwrite or not existing:
            free.append(base)
            continue
        n = 1
        while any(f.exists() or f.is_symlink() for f in files(Path(f"{base}-{n}"))) or f"{base}-{n}".lower() in taken:
            n += 1
        new = Path(f"{base}-{n}")
        taken.add(str(new).lower())
        free.append(new)
        notes.append(f"{existing[0]} exists; writing {files(new)[0]} instead (--overwrite replaces it)")
    return free, notes


def _writer(host: PluginHost, config: FlashConfig, name: str) -> tuple[Any, str]:
    spec = host.registry.get("video_format", name, where="animate.formats")
    write = host.registry.create("video_format", name, config.component_options("video_format", name),
                                 where=f"options.video_format.{name}")
    return write, spec.traits.extensions[0]


def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()
