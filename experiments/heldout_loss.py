"""Does a learned motion explain held-out people's real motion better than the base alone?

The denoising loss on frames 1..F-1 of held-out clips (the training objective, fixed noise and fixed
timesteps) with the motion LoRA at strength 1 over the same with it at strength 0 (the base alone):
below 1.0 the motion predicts these people's real continuation better than the base. High timesteps
decide the large-scale motion, low ones the detail. Cheap (no sampling) and free of sampler noise, so
it separates "learned and transfers" from "learned the training people only" (compare the ratio on the
training clips).

Run:   .venv/bin/python experiments/heldout_loss.py --config PROJECT/flashctl.toml --motion bow-1-s0 --clips HELD_OUT/
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

TIMESTEPS = (100, 300, 500, 700, 900)


def loss_ratios(animator: Any, config: Any, clips: list[Path], timesteps: tuple[int, ...] = TIMESTEPS,
                seed: int = 0) -> dict[int, dict[str, float]]:
    """``{t: {"base": loss, "motion": loss, "ratio": motion / base}}`` over ``clips`` (mp4 paths).

    ``animator``: a loaded motion (:func:`flashctl.pipeline.animate.load_animator`); its strength is left as
    the config sets it.
    """
    import torch

    from flashctl.model.flash import denoising_loss
    from flashctl.model.lora import set_motion_strength
    from flashctl.pipeline.prepare import normalise_clips
    from flashctl.progress import NullReporter
    from flashctl.video import frames_to_tensor

    backbone = animator.model.backbone
    videos = normalise_clips(list(clips), config, [], NullReporter())  # (N, F, S, S, 3) uint8
    latents = backbone.encode_video(torch.stack([frames_to_tensor(v) for v in videos]))  # (N, F, c, h, w)
    objective = backbone.objective
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed))  # (N, F, c, h, w)
    found = {}
    with torch.no_grad():
        for t in timesteps:
            step = torch.full((latents.shape[0],), t)
            losses = {}
            for name, strength in (("base", 0.0), ("motion", 1.0)):
                set_motion_strength(backbone, strength)
                losses[name] = float(denoising_loss(backbone, objective, latents, noise, step,
                                                    animator.prompt_emb).mean())
            found[t] = {**losses, "ratio": losses["motion"] / losses["base"]}
    set_motion_strength(backbone, config.animate.strength)
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--motion", required=True)
    p.add_argument("--clips", type=Path, required=True, help="folder of held-out mp4 clips")
    p.add_argument("--max-clips", type=int, default=8)
    args = p.parse_args(argv)
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    import torch

    from flashctl.config import load_config
    from flashctl.library import MotionLibrary
    from flashctl.pipeline.animate import load_animator
    from flashctl.plugins import host_for

    torch.set_num_threads(1)
    config = load_config(args.config)
    clips = sorted(args.clips.glob("*.mp4"))[:args.max_clips]
    animator = load_animator(config, MotionLibrary(config.library_path()), args.motion, host_for(config))
    for t, row in loss_ratios(animator, config, clips).items():
        print(f"t={t:4d}  base {row['base']:.5f}  motion {row['motion']:.5f}  ratio {row['ratio']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
