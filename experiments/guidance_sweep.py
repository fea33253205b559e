"""How much classifier-free guidance the shipped motions want: motion size on the person vs background flicker.

    python experiments/guidance_sweep.py [--scales 1,2,3,4,6] [--seeds 0,1] [--actions all] [--set KEY=VALUE ...]

examples/actor.png is the held-out synthetic person of seed 7, so for every action the synthetic world
can also render that person really doing it. For each (action, scale) this animates the image and
prints the mean frame-to-frame change on the box the real motion sweeps (``person``), off it
(``background``), and ``person`` over the real clip's (1.0 = motion as large as the real one). Writes
the table as JSON and a picture (one row per action and scale) next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))  # the README picture's row helpers
from readme_sheet import labelled_row, stack  # noqa: E402

ACTOR = ROOT / "examples" / "actor.png"
ACTOR_SEED, ACTOR_SPLIT = 7, "heldout"  # how scripts/make_examples.py drew actor.png


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scales", default="1,2,3,4,6")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--actions", default="all", help="'all' trained motions or a comma-separated list")
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "guidance_sweep.json")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")  # no dtype-cast notes from diffusers

    from flashctl_synth.render import motion_mask, render_clip

    from flashctl.config import load_config
    from flashctl.library import MotionLibrary
    from flashctl.pipeline.animate import load_animator
    from flashctl.plugins import host_for
    from flashctl.video import change_map, fit_square, read_image

    scales = [float(s) for s in args.scales.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    config = load_config(ROOT / "flashctl.toml", args.overrides)
    host, library = host_for(config), MotionLibrary(config.library_path())
    actions = library.names() if args.actions == "all" else args.actions.split(",")
    rows, pictures = [], []
    print(f"{'action':<14}{'scale':>6}{'person':>9}{'background':>12}{'vs real':>9}")
    for action in actions:
        for scale in scales:
            config = load_config(ROOT / "flashctl.toml", [*args.overrides, f"animate.guidance_scale={scale}"])
            animator = load_animator(config, library, action, host)
            real, meta = render_clip(action, frames=animator.frames, size=animator.size, seed=ACTOR_SEED,
                                     split=ACTOR_SPLIT)  # (F, S, S, 3): this person really doing it
            person, truth = motion_mask(meta), change_map(real)  # (S, S) bool, (S, S)
            image = fit_square(read_image(ACTOR), animator.size)
            videos = [animator.render(image, seed) for seed in seeds]  # each (F, S, S, 3) uint8
            made = np.mean([change_map(v) for v in videos], axis=0)  # (S, S)
            row = {"action": action, "scale": scale, "person": float(made[person].mean()),
                   "background": float(made[~person].mean()), "real_person": float(truth[person].mean())}
            row["vs_real"] = row["person"] / row["real_person"]
            rows.append(row)
            pictures.append(labelled_row(f"{action}\nguidance {scale:g}", videos[0], 2, 2))
            print(f"{action:<14}{scale:>6g}{row['person']:>9.2f}{row['background']:>12.2f}{row['vs_real']:>9.2f}",
                  flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"image": str(ACTOR.relative_to(ROOT)), "seeds": seeds, "rows": rows}, indent=2))
    stack(pictures).save(args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
