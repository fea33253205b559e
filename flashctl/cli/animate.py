"""flashctl animate: turn still images into videos of a learned action."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import ImageReadError
from .console import RichReporter, err, print_json
from .options import JsonOpt, SetOpt
from .state import state

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def expand_images(paths: list[Path]) -> list[Path]:
    """Files as given; folders expand to their image files, sorted."""
    images: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise ImageReadError(f"no images found in folder {p}", hint="put .png/.jpg files there")
            images += found
        else:
            images.append(p)
    return images


def animate(
    action: Annotated[str, typer.Option("--action", "-a", help="A trained action in the motion library.")],
    image: Annotated[list[Path], typer.Option("--image", "-i", help="Reference image or folder of images (repeatable).")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default: animate.out, relative to the config file).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Sampling seed (default: animate.seed).")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", min=1, help="Denoising steps (default: animate.steps).")] = None,
    fmt: Annotated[Optional[list[str]], typer.Option("--format", "-f", help="Output format: mp4, gif, png (repeatable).")] = None,
    guidance: Annotated[Optional[float], typer.Option("--guidance", "-g", min=0, help="Classifier-free guidance on the action prompt; 1 = off, higher = larger motion (default: animate.guidance_scale).")] = None,
    strength: Annotated[Optional[float], typer.Option("--strength", "-s", min=0, max=4, help="Motion LoRA scale: 1 = as trained, 0 = the base alone with the action's prompt (default: animate.strength).")] = None,
    set_: SetOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Animate each IMAGE with ACTION; prints the written files, one per line."""
    from ..pipeline.animate import animate as run

    overrides = list(set_ or [])
    if steps is not None:
        overrides.append(f"animate.steps={steps}")
    if guidance is not None:
        overrides.append(f"animate.guidance_scale={guidance}")
    if strength is not None:
        overrides.append(f"animate.strength={strength}")
    config = state.config(overrides)
    out_dir = out or config.project_path(config.animate.out)
    reporter = RichReporter()
    results = run(config, state.library(config), action, expand_images(image), out_dir, state.host(config),
                  reporter=reporter, formats=fmt, seed=seed)
    reporter.finish()
    if json_:
        print_json([{"image": str(r.image), "outputs": [str(p) for p in r.outputs], "frames": r.frames,
                     "seconds": r.seconds} for r in results])
        return
    for r in results:
        err.print(f"[green]animated[/] {r.image} -> {r.frames} frames in {r.seconds:.1f} s")
        for p in r.outputs:
            typer.echo(str(p))
