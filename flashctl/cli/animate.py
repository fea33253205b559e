"""flashctl animate: turn still images into videos of a learned action."""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import ImageReadError
from ..files import expand_files
from .console import RichReporter, print_json
from .options import JsonOpt, SetOpt
from .state import state

class Fit(str, enum.Enum):  # flashctl.video.FITS, without importing numpy for --help
    crop = "crop"
    pad = "pad"
    stretch = "stretch"


IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def expand_images(paths: list[Path]) -> list[Path]:
    """Files as given; folders expand to their image files, sorted."""
    return expand_files(paths, IMAGE_EXTENSIONS, lambda folder: ImageReadError(
        f"no images found in folder {folder}", hint="put .png/.jpg files there"))


def library_for(config, action: str, reporter):
    """The configured library; or, when no config sets ``library.path`` and it lacks ``action``, the shipped demo
    motions (read: animate writes nothing into a library), with a note saying so."""
    library = state.library(config)
    shipped = config.fallback_library()
    if shipped is None or library.exists(action):
        return library
    from ..library import MotionLibrary

    fallback = MotionLibrary(shipped)
    if not fallback.exists(action):
        return library
    reporter.note(f"motion '{action}' is not in {library.root}; using the shipped demo motion in {shipped} "
                  "(set library.path to choose a library)")
    return fallback


def animate(
    action: Annotated[str, typer.Option("--action", "-a", help="A trained action in the motion library.")],
    image: Annotated[list[Path], typer.Option("--image", "-i", help="Reference image or folder of images (repeatable).")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default: animate.out, relative to the config file), or with one image a file: NAME.mp4, NAME.gif or NAME.png (animated PNG) writes exactly that file, in that format, without a contact sheet.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Sampling seed (default: animate.seed).")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", min=1, help="Denoising steps (default: animate.steps).")] = None,
    fmt: Annotated[Optional[list[str]], typer.Option("--format", "-f", help="Output format: mp4, gif, apng, png (a folder of frames) (repeatable).")] = None,
    guidance: Annotated[Optional[float], typer.Option("--guidance", "-g", min=0, help="Classifier-free guidance on the action prompt; 1 = off, higher = larger motion (default: animate.guidance_scale).")] = None,
    strength: Annotated[Optional[float], typer.Option("--strength", "-s", min=0, max=4, help="Motion LoRA scale: 1 = as trained, 0 = the base alone with the action's prompt (default: animate.strength).")] = None,
    fit: Annotated[Fit, typer.Option("--fit", help="How a non-square image becomes the model's square: crop its centre (default), pad it (border colour), or stretch it. A line on stderr says how much was cropped or padded.")] = Fit.crop,
    size: Annotated[Optional[int], typer.Option("--size", min=8, help="Output video's long side in pixels (default: the model's native size, animate's square). With --fit crop the video is square; with pad or stretch it keeps the image's aspect ratio (padding cut away, stretch undone). Plain resampling (PIL Lanczos): no detail is added.")] = None,
    upscale: Annotated[bool, typer.Option("--upscale", help="Output video at the input image's size (with --fit crop: its centre square), by the same plain resampling as --size.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs (default: write NAME-1, NAME-2... beside them and say so).")] = False,
    set_: SetOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Animate each IMAGE with ACTION; prints each video as it is written, one per line.

    Contact sheets and other extras are listed only with --json. Progress counts denoising steps.
    Under `accelerate launch` each process renders a share of the images; the main one lists them all.
    """
    from ..pipeline.animate import animate as run
    from ..sharding import current_shard

    if size is not None and upscale:
        raise typer.BadParameter("--size and --upscale both set the output size; pass one", param_hint="--size")

    overrides = list(set_ or [])
    if steps is not None:
        overrides.append(f"animate.steps={steps}")
    if guidance is not None:
        overrides.append(f"animate.guidance_scale={guidance}")
    if strength is not None:
        overrides.append(f"animate.strength={strength}")
    config = state.config(overrides)
    out_dir = out or config.project_path(config.animate.out)
    shard = current_shard(config)  # under `accelerate launch`: this process's share of the images
    reporter = shard.reporter(RichReporter())

    def written(r) -> None:
        if json_:
            return
        reporter.note(f"animated {r.image} -> {r.frames} frames in {r.seconds:.1f} s", level="success")
        for p in r.videos:
            typer.echo(str(p))
            sys.stdout.flush()  # a pipe sees each video as soon as it exists

    library = library_for(config, action, reporter)
    results = run(config, library, action, expand_images(image), out_dir, state.host(config), reporter=reporter,
                  formats=fmt, seed=seed, fit=Fit(fit).value, overwrite=overwrite, size=size, upscale=upscale,
                  on_result=written)
    reporter.finish()
    if json_ and shard.main:  # the main process lists every process's outputs
        print_json([{"image": str(r.image), "videos": [str(p) for p in r.videos],
                     "extras": [str(p) for p in r.extras], "outputs": [str(p) for p in r.outputs],
                     "frames": r.frames, "seconds": r.seconds} for r in results])
