"""Appearance leak: do the training people's colours show up when a motion animates someone else?

    python experiments/appearance_leak.py --config PROJECT/flashctl.toml --motion bow-1-s0="plain" \
        --motion bow-6-s0=FLASH [--heldout 8] [--tolerance 24]

``PROJECT`` is an ablation project (``experiments/ablation.py``): ``clips/train`` holds the training clips
and ``clips/heldout`` the held-out ones, each with the synthetic world's ``.json`` (the person's colours).
The synthetic world draws training and held-out people from disjoint colour pools, so a held-out
person's video has no business showing a training person's shirt, trousers, skin, hair or scene colour.

A pixel of frames 1..N *leaks* when it lies within ``--tolerance`` (RGB distance) of a training
person's colour (each at the two shades the painter uses) and farther than that from every colour of
the held-out person's own real clip (all its frames). The leak of a video is the share of such pixels,
among all pixels and among the pixels that moved (differ from frame 0).

Rows, each over the same held-out people (mean ± std):

* ``real clip``: 0 by construction (every pixel is one of the person's own colours).
* ``real, VAE round trip``: the real clip encoded and decoded by the base's VAE: the floor that
  blurring and colour mixing alone reach.
* ``training person, same motion``: the check that the measure sees a leak when there is one: the
  held-out clip's motion performed by a training person (their colours everywhere).
* ``base alone`` (the first motion at strength 0) and each ``--motion``, rendered from the held-out
  person's first frame with the project's animate settings (the decoder the motion was trained with).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))  # the sibling experiment, also when loaded by path
from compare_sheet import parse_motion  # noqa: E402

COLOUR_KEYS = ("skin", "hair_color", "shirt", "shirt_accent", "pants", "pants_accent", "shoes")


def person_colours(appearance: dict) -> np.ndarray:
    """One person's painted colours, at the painter's near and far shades -> (P, 3) float."""
    from flashctl_synth.figure import FAR_SHADE

    base = [appearance[k] for k in COLOUR_KEYS] + [list(c) for c in appearance["background_colors"]]
    base = np.asarray(base, dtype=np.float32)  # (K, 3)
    return np.concatenate([base, np.minimum(255, base * FAR_SHADE).astype(np.int32).astype(np.float32)])


def _nearest(colours: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(U, 3) colours, (P, 3) palette -> (U,) distance of each colour to its nearest palette entry."""
    return np.sqrt(((colours[:, None, :] - palette[None, :, :]) ** 2).sum(-1)).min(1)


def leak_fraction(video: np.ndarray, own_clip: np.ndarray, foreign: np.ndarray, tolerance: float = 24.0) -> float:
    """Share of frames 1..N pixels near a foreign colour and far from all of the person's own colours.

    ``video`` (F, S, S, 3) uint8 to score; ``own_clip`` (F', S, S, 3) uint8: the person's real clip;
    ``foreign`` (P, 3): the training people's colours.
    """
    return float(_leaking(video[1:].reshape(-1, 3), own_clip, foreign, tolerance).mean())


def moving_leak_fraction(video: np.ndarray, own_clip: np.ndarray, foreign: np.ndarray,
                         tolerance: float = 24.0) -> float:
    """As :func:`leak_fraction`, among the pixels of frames 1..N that moved (differ from frame 0 by more
    than ``tolerance``); 0 when nothing moved. Anchoring copies still pixels from the reference, so a leak
    can only be where the video moves: this share is not diluted by the still background."""
    moved = np.sqrt(((video[1:].astype(np.float32) - video[:1]) ** 2).sum(-1)).reshape(-1) > tolerance  # (N,)
    if not moved.any():
        return 0.0
    return float(_leaking(video[1:].reshape(-1, 3)[moved], own_clip, foreign, tolerance).mean())


def _leaking(pixels: np.ndarray, own_clip: np.ndarray, foreign: np.ndarray, tolerance: float) -> np.ndarray:
    """(N, 3) uint8 pixels -> (N,) bool: near a foreign colour, far from every colour of ``own_clip``."""
    colours, inverse = np.unique(pixels, axis=0, return_inverse=True)  # (U, 3), (N,)
    colours = colours.astype(np.float32)
    own = np.unique(own_clip.reshape(-1, 3), axis=0).astype(np.float32)  # (Q, 3)
    leaks = _nearest(colours, foreign) <= tolerance  # (U,)
    candidates = np.flatnonzero(leaks)
    leaks[candidates] = _nearest(colours[candidates], own) > tolerance
    return leaks[inverse.reshape(-1)]


def vae_round_trip(animator, clip: np.ndarray) -> np.ndarray:
    """(F, S, S, 3) uint8 -> the same clip encoded and decoded by the animator's base VAE."""
    import torch

    from flashctl.video import frames_to_tensor, tensor_to_frames

    with torch.no_grad():
        latents = animator.model.backbone.encode_video(frames_to_tensor(clip)[None])  # (1, F', c, h, w)
        return tensor_to_frames(animator.model.backbone.decode_latents(latents)[0].float().cpu())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, required=True, help="the ablation project's flashctl.toml")
    p.add_argument("--motion", type=parse_motion, action="append", required=True, metavar="NAME=LABEL")
    p.add_argument("--heldout", type=int, default=8, help="held-out people (the first N clips)")
    p.add_argument("--tolerance", type=float, default=24.0, help="RGB distance that counts as the same colour")
    p.add_argument("--out", type=Path, help="also write the per-person figures as JSON here")
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
    from flashctl_synth.render import render_clip

    project = args.config.parent
    train_meta = [json.loads(f.read_text()) for f in sorted((project / "clips" / "train").glob("*.json"))]
    people = {m["seed"]: m for m in train_meta}  # one entry per training person
    foreign = np.concatenate([person_colours(m["appearance"]) for m in people.values()])  # (P, 3)
    clips = sorted((project / "clips" / "heldout").glob("*.mp4"))[:args.heldout]
    metas = [json.loads(c.with_suffix(".json").read_text()) for c in clips]

    config = load_config(args.config, args.overrides)
    host, library = host_for(config), MotionLibrary(config.library_path())
    base = load_config(args.config, [*args.overrides, "animate.strength=0", 'model.decoder="vae"'])
    animators = [("base alone", load_animator(base, library, args.motion[0][0], host))]
    for name, label in args.motion:  # each motion decodes with the decoder it was trained with
        decoder = (library.weights_config(name) or {}).get("decoder", {}).get("name", config.model.decoder)
        own = load_config(args.config, [*args.overrides, f'model.decoder="{decoder}"'])
        animators.append((label, load_animator(own, library, name, host)))
    real = normalise_clips(clips, config, [], NullReporter())  # (N, F, S, S, 3) uint8
    trainer = next(iter(people))
    frames, size = real.shape[1], real.shape[2]

    scores: dict[str, list[float]] = {}
    moving: dict[str, list[float]] = {}
    for clip, meta in zip(real, metas):
        stand_in, _ = render_clip(meta["action"], frames=frames, size=size, seed=trainer, split="train",
                                  motion_seed=meta["motion_seed"], canonical=meta.get("canonical", False))
        videos = [("real clip", clip), ("real, VAE round trip", vae_round_trip(animators[0][1], clip)),
                  ("training person, same motion", stand_in)]
        videos += [(label, a.render(clip[0], config.animate.seed)) for label, a in animators]
        for label, video in videos:
            scores.setdefault(label, []).append(leak_fraction(video, clip, foreign, args.tolerance))
            moving.setdefault(label, []).append(moving_leak_fraction(video, clip, foreign, args.tolerance))
        print(f"person {meta['seed']}: " + ", ".join(f"{k} {v[-1]:.4f}" for k, v in scores.items()),
              file=sys.stderr, flush=True)
    print(f"| video | leak, share of all pixels | leak, share of moving pixels |\n|---|---:|---:|")
    for label, values in scores.items():
        print(f"| {label} | {np.mean(values):.4f} ± {np.std(values):.4f} "
              f"| {np.mean(moving[label]):.4f} ± {np.std(moving[label]):.4f} |")
    print(f"({len(clips)} held-out people, tolerance {args.tolerance:g})")
    if args.out:
        args.out.write_text(json.dumps({"tolerance": args.tolerance, "heldout": [m["seed"] for m in metas],
                                        "scores": scores, "moving": moving}, indent=2) + "\n")


if __name__ == "__main__":
    main()
