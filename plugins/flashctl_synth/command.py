"""``flashctl synth``: write synthetic clips of an action (mp4 + keypoint JSON) or reference images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def synth(
    action: Annotated[str, typer.Argument(help="Action to perform: jumping_jack, squat, arm_wave, kick, punch, "
                                               "jump, bow, side_bend, soccer_shot.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write into (created if missing).")],
    clips: Annotated[int, typer.Option("--clips", "-n", help="How many clips (clip i uses seed S+i).")] = 16,
    appearance_split: Annotated[str, typer.Option("--appearance-split", help="Appearance split: train or heldout "
                                                  "(they share no colours or styles), drawn (outlined flat "
                                                  "cartoons on paper, in colours of their own) or pose (the "
                                                  "keypoint estimator's random colours).")] = "train",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the first clip.")] = 0,
    frames: Annotated[int, typer.Option("--frames", help="Frames per clip.")] = 16,
    size: Annotated[int, typer.Option("--size", help="Width and height in pixels.")] = 64,
    fps: Annotated[float, typer.Option("--fps", help="Frames per second.")] = 8.0,
    people: Annotated[Optional[int], typer.Option("--people", min=1, help="Only N people (clip i shows person "
                                                  "S + i mod N), each clip a different variation of the action: "
                                                  "an appearance-poor set like a real few-shot one.")] = None,
    canonical: Annotated[bool, typer.Option("--canonical", help="Everyone faces image right and leads with "
                                            "the right limbs: the action goes one way only.")] = False,
    reference_only: Annotated[bool, typer.Option("--reference-only", help="Write only each clip's first frame "
                                                 "as a PNG reference image (for `flashctl animate`).")] = False,
) -> None:
    """Render synthetic people doing ACTION; prints the written clips (or images), one per line.

    Each clip.mp4 gets a clip.json beside it with the action, seed, appearance, fps, size and the
    2-D keypoints of every frame.
    """
    from flashctl.cli.console import RichReporter, err

    from .render import write_clips

    reporter = RichReporter()
    paths = write_clips(action, clips, out, frames=frames, size=size, fps=fps, seed=seed, split=appearance_split,
                        reference_only=reference_only, people=people, canonical=canonical, reporter=reporter)
    reporter.finish()
    what = "reference images" if reference_only else "clips + keypoint JSON"
    err.print(f"[green]wrote[/] {len(paths)} {action} {what} ({appearance_split} appearances) to {out}")
    for path in paths:
        typer.echo(str(path))
