"""Pretrain the tiny AnimateDiff base on the synthetic actor world, resumably (flashctl_animatediff.pretrain).

    python scripts/pretrain_base.py --out runs/tiny-base [--stage vae|decoder|unet|all] [--steps N] [--vae-steps N]
        [--decoder-steps N]
        [--batch B] [--frames 16] [--size 64] [--actions all|a,b] [--clips-per-action N] [--resume]
        [--checkpoint-every K] [--sample-every K] [--seed S] [--threads T] [--device cpu|cuda]
        [--target residual|latent] [--prediction-type v_prediction|epsilon] [--appearance train|wide]
        [--vae-minutes M] [--decoder-minutes M] [--unet-minutes M] [--render-workers N] [--encoder-anchor W]

Stage vae trains the AutoencoderKL on frames; stage decoder (optional) goes on training its decoder
alone, the encoder frozen, and may run beside stage unet (final/ takes its latest checkpoint); run alone
it also writes OUT/decoder-base/ (vae-base with that decoder): to refit a finished base's decoder, copy the
base to OUT/vae-base first (its U-Net and latent space stay; motions record the whole base's content id, so
they are refused on the refitted base until retrained; --encoder-anchor W refits the encoder too, held
near its original latents); stage
unet trains the whole video U-Net (VAE and text encoder frozen) on latent clips of every action with
flashctl's LAMP-style loss. Checkpoints go to OUT/checkpoints/ every K steps and on Ctrl-C; rerun the
same command with --resume to go on.
``--actions`` may name the world's motion priors (``wander_side``, ``wander_front``: random smooth poses) besides
its actions; ``--appearance wide`` draws every other training clip from the ``pose`` split's people (random
colours, every pattern and scene style) instead of the train pool (the held-out pool stays unseen either way);
``--*-minutes`` end a stage after the step that passes its wall-clock budget, as if its steps were done (for a
machine lent by the minute; ``--resume`` with a larger budget goes on).
Progress: stdout and OUT/train.log; held-out samples: OUT/samples/step-N.png (rows alternate real
clip / generated). The result, OUT/final/, loads as the tiny preset's base:
``[options.backbone.animatediff] base = "OUT/final"`` (copy it to
plugins/flashctl_animatediff/weights/tiny-base/ to ship it as ``base = "shipped"``).
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np


class PrintReporter:
    """Loss and s/step every ``every`` steps on stdout."""

    def __init__(self, every: int = 10) -> None:
        self.every, self.task, self.step, self.total = every, "", 0, None

    def start(self, task: str, total: int | None = None) -> None:
        self.task, self.step, self.total = task, 0, total

    def advance(self, n: int = 1, **metrics: float) -> None:
        self.step += n
        if metrics and (self.step % self.every == 0 or self.step == self.total):
            shown = " ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            print(f"{self.task} {self.step}/{self.total} {shown}", flush=True)

    def finish(self) -> None:
        pass

    def note(self, text: str, level: str = "info") -> None:
        print(f"[{level}] {text}", flush=True)


def recolour(frames: "np.ndarray", seed: int) -> "np.ndarray":
    """One random colour remap per clip, the same on every frame (motion untouched), for half the clips.

    The train pool's palette alone left the tiny VAE unable to reproduce held-out colours (a 600-step
    VAE turned a held-out yellow-grey scene blue); remapped clips widen the colours the base learns.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    if rng.random() < 0.5:
        return frames
    mix = 0.7 * rng.permutation(np.eye(3)) + 0.3 * rng.dirichlet(np.ones(3), size=3)  # (3, 3), rows sum to 1
    out = frames.astype(np.float32) @ mix.T  # (F, H, W, 3)
    if rng.random() < 0.3:
        out = 255.0 - out
    return out.clip(0, 255).astype(np.uint8)


def training_clip(render: "Callable[..., tuple[np.ndarray, dict]]", action: str, seed: int, split: str, *,
                  appearance: str, recoloured: bool) -> "np.ndarray":
    """``(F, H, W, 3)`` uint8 clip ``seed`` of ``action`` for pretraining: with ``appearance = "wide"`` every other
    training clip (odd seeds) shows a ``pose``-split person (random colours, every style) instead of a train-pool
    one; ``recoloured`` remaps half the train-pool clips' colours (:func:`recolour`)."""
    from flashctl_synth.world import POSE_SPLIT

    wide = split == "train" and appearance == "wide" and seed % 2 == 1
    frames = render(action, seed=seed, split=POSE_SPLIT if wide else split)[0]  # (F, H, W, 3) uint8
    return recolour(frames, seed) if recoloured and split == "train" and not wide else frames


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--stage", choices=("vae", "decoder", "unet", "all"), default="all")
    p.add_argument("--steps", type=int, default=3000, help="U-Net steps in total")
    p.add_argument("--vae-steps", type=int, default=600)
    p.add_argument("--decoder-steps", type=int, default=0, help="decoder-only steps after the VAE (0: none)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--actions", default="all", help="'all' or a comma-separated list")
    p.add_argument("--clips-per-action", type=int, default=200)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--sample-every", type=int, default=250)
    p.add_argument("--sample-steps", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--target", choices=("residual", "latent"), default="residual")
    p.add_argument("--prediction-type", choices=("v_prediction", "epsilon"), default="v_prediction")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--appearance", choices=("train", "wide"), default="train",
                   help="training people: the train pool (default), or every other clip from the pose split's "
                        "random appearances (wide)")
    for stage in ("vae", "decoder", "unet"):
        p.add_argument(f"--{stage}-minutes", type=float, default=None,
                       help=f"end the {stage} stage after this many minutes of wall time (default: no limit)")
    p.add_argument("--render-workers", type=int, default=0,
                   help="render each stage's training clips up front in this many processes (default: one at a "
                        "time, as the steps first draw them)")
    p.add_argument("--encoder-anchor", type=float, default=0.0,
                   help="--stage decoder alone: also refit the encoder, its latents pulled to the original's with "
                        "this weight (0: encoder frozen)")
    p.add_argument("--no-recolour", dest="recolour", action="store_false",
                   help="train on the train pool's palette only (default: half the clips get a random colour remap)")
    return p.parse_args(argv)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # checkpoint and stop, as on Ctrl-C


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    # background jobs ignore SIGINT; `kill PID` (SIGTERM) must checkpoint too
    signal.signal(signal.SIGTERM, _interrupt)
    import torch
    from flashctl_synth.actions import ACTIONS, PRIOR_MOTIONS
    from flashctl_synth.render import render_clip

    from flashctl_animatediff.pretrain import PretrainSettings, pretrain
    from flashctl_animatediff.pretrain_data import ClipSource

    from flashctl.context import BuildContext
    from flashctl.errors import FlashctlError
    from flashctl.plugins import build_host

    if args.threads:
        torch.set_num_threads(args.threads)
    render = partial(render_clip, frames=args.frames, size=args.size, fps=8)
    clip = partial(training_clip, render, appearance=args.appearance, recoloured=args.recolour)
    source = ClipSource(prompts={name: a.prompt for name, a in {**ACTIONS, **PRIOR_MOTIONS}.items()}, render=clip)
    settings = PretrainSettings(
        out=args.out, stage=args.stage, steps=args.steps, vae_steps=args.vae_steps,
        decoder_steps=args.decoder_steps, encoder_anchor=args.encoder_anchor, batch=args.batch,
        frames=args.frames, size=args.size,
        actions=() if args.actions == "all" else tuple(a.strip() for a in args.actions.split(",")),
        clips_per_action=args.clips_per_action, checkpoint_every=args.checkpoint_every,
        sample_every=args.sample_every, sample_steps=args.sample_steps, seed=args.seed, lr=args.lr,
        target=args.target, prediction_type=args.prediction_type, device=args.device, resume=args.resume,
        vae_minutes=args.vae_minutes, decoder_minutes=args.decoder_minutes, unet_minutes=args.unet_minutes,
        render_workers=args.render_workers)
    registry, ctx = build_host().registry, BuildContext(device=args.device)
    command = "python scripts/pretrain_base.py " + shlex.join(argv)
    try:
        path = pretrain(settings, source, lambda options: registry.create("backbone", "animatediff", options, ctx),
                        PrintReporter(args.log_every), command)
    except FlashctlError as exc:
        print(f"error: {exc.message}" + (f"\n  hint: {exc.hint}" if exc.hint else ""), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
