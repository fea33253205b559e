"""One picture comparing motions on held-out people: the real clip, the base alone, then each motion.

    python experiments/compare_sheet.py --config PROJECT/flashctl.toml --clips HELD_OUT.mp4 [...] \
        --motion bow-1-s0="plain fine-tune" --motion bow-6-s0=FLASH [--out sheet.png] [--every 2] [--zoom 2]

Per clip, rows of every ``--every``-th frame (enlarged ``--zoom`` times, nearest neighbour): the real
continuation, the base alone (the first motion at strength 0: its prompt, no LoRA), then each
``--motion NAME=LABEL`` rendered from the clip's first frame with the project's animate settings and the
decoder the motion was trained with.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))  # the README picture's row helpers
from readme_sheet import labelled_row, stack  # noqa: E402


def parse_motion(text: str) -> tuple[str, str]:
    name, _, label = text.partition("=")
    return name, label or name


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, required=True, help="the project whose library holds the motions")
    p.add_argument("--clips", type=Path, nargs="+", required=True, help="held-out clips (mp4)")
    p.add_argument("--motion", type=parse_motion, action="append", required=True, metavar="NAME=LABEL")
    p.add_argument("--out", type=Path, default=Path("compare_sheet.png"))
    p.add_argument("--every", type=int, default=2)
    p.add_argument("--zoom", type=int, default=2)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

    from flashctl.config import load_config
    from flashctl.library import MotionLibrary
    from flashctl.pipeline.animate import load_animator
    from flashctl.pipeline.prepare import normalise_clips
    from flashctl.plugins import host_for
    from flashctl.progress import NullReporter

    config = load_config(args.config, args.overrides)
    host, library = host_for(config), MotionLibrary(config.library_path())
    first = args.motion[0][0]
    base = load_config(args.config, [*args.overrides, "animate.strength=0", 'model.decoder="vae"'])
    animators = [("base alone", load_animator(base, library, first, host))]
    for name, label in args.motion:  # each motion decodes with the decoder it was trained with (DED for row #6)
        decoder = (library.weights_config(name) or {}).get("decoder", {}).get("name", config.model.decoder)
        own = load_config(args.config, [*args.overrides, f'model.decoder="{decoder}"'])
        animators.append((label, load_animator(own, library, name, host)))
    clips = normalise_clips(args.clips, config, [], NullReporter())  # (N, F, S, S, 3) uint8
    rows = []
    for path, clip in zip(args.clips, clips):
        rows.append(labelled_row(f"real clip\n{path.stem}", clip, args.every, args.zoom))
        for label, animator in animators:
            rows.append(labelled_row(label, animator.render(clip[0], config.animate.seed), args.every, args.zoom))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    stack(rows).save(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
