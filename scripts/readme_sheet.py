"""Render the README's picture: each trained motion of the library animating each image in examples/.

    python scripts/readme_sheet.py [--out docs/images/demo_sheet.png] [--every 2] [--zoom 2] [--set KEY=VALUE ...]

One row per (action, image): the action's name, then every ``--every``-th frame, enlarged ``--zoom``
times (nearest neighbour, so nothing is smoothed away). Uses the project's flashctl.toml and seed;
``--set`` overrides a key as on the CLI (e.g. ``--set animate.guidance_scale=1`` to compare).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
LABEL_WIDTH = 120


def labelled_row(label: str, frames: np.ndarray, every: int, zoom: int) -> Image.Image:
    """``frames`` (F, H, W, 3) uint8 -> one strip: label cell, then frames 0, every, 2*every, ..."""
    picked = frames[::every]  # (F', H, W, 3)
    strip = Image.fromarray(np.concatenate(list(picked), axis=1))  # (H, F'*W, 3)
    strip = strip.resize((strip.width * zoom, strip.height * zoom), Image.Resampling.NEAREST)
    row = Image.new("RGB", (LABEL_WIDTH + strip.width, strip.height), "white")
    row.paste(strip, (LABEL_WIDTH, 0))
    ImageDraw.Draw(row).multiline_text((6, strip.height // 2 - 12), label, fill="black", spacing=2)
    return row


def stack(rows: list[Image.Image]) -> Image.Image:
    """The rows one under another, on white, as wide as the widest."""
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    for i, row in enumerate(rows):
        sheet.paste(row, (0, sum(r.height for r in rows[:i])))
    return sheet


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "demo_sheet.png")
    p.add_argument("--every", type=int, default=2)
    p.add_argument("--zoom", type=int, default=2)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")  # no dtype-cast notes from diffusers

    from flashctl.config import load_config
    from flashctl.library import MotionLibrary
    from flashctl.pipeline.animate import load_animator
    from flashctl.plugins import host_for
    from flashctl.video import read_image

    config = load_config(ROOT / "flashctl.toml", args.overrides)
    host, library = host_for(config), MotionLibrary(config.library_path())
    images = sorted((ROOT / "examples").glob("*.png"))
    rows = []
    for action in library.names():
        animator = load_animator(config, library, action, host)
        for path in images:
            frames = animator.render(read_image(path), config.animate.seed)  # (F, S, S, 3) uint8
            rows.append(labelled_row(f"{action}\n{path.name}", frames, args.every, args.zoom))
    if not rows:
        raise SystemExit(f"error: no trained motions in {library.root}; build them: bash scripts/build_motions.sh")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    stack(rows).save(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
