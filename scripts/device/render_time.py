"""Time rendering the device kit's training clips on one CPU core (pretraining renders them serially, once per stage).

    .venv/bin/python scripts/device/render_time.py [--clips 30] [--actions a,b,...] [--appearance wide]

Prints ms per clip for each motion and what the kit's pool (``--pool`` clips, default 6 x 200) costs per stage.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

KIT_ACTIONS = "jumping_jack,squat,arm_wave,kick,wander_side,wander_front"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=30, help="clips timed per motion")
    p.add_argument("--actions", default=KIT_ACTIONS)
    p.add_argument("--appearance", choices=("train", "wide"), default="wide")
    p.add_argument("--pool", type=int, default=1200, help="clips a stage renders (actions x clips per action)")
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from pretrain_base import training_clip  # scripts/pretrain_base.py: the clips pretraining draws

    from flashctl_synth.render import render_clip

    render = partial(render_clip, frames=16, size=64, fps=8)
    per = {}
    for action in args.actions.split(","):
        began = time.perf_counter()
        for seed in range(args.clips):
            training_clip(render, action, seed, "train", appearance=args.appearance, recoloured=True)
        per[action] = (time.perf_counter() - began) / args.clips
    mean = sum(per.values()) / len(per)
    print(" ".join(f"{a} {v * 1000:.0f} ms" for a, v in per.items()))
    print(f"mean {mean * 1000:.0f} ms/clip (16 frames, 64 px): {args.pool} clips {args.pool * mean:.0f} s per stage")


if __name__ == "__main__":
    main()
