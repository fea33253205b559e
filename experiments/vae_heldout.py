"""Where the shipped tiny base's VAE loses held-out people: its encoder or its decoder.

For frames of training-pool and held-out synthetic people (every 4th frame of ``--clips`` clips, mixed actions):

* ``round trip``: L1 of encode -> decode (what every sample and every eval goes through);
* ``best latent``: L1 after fitting the latent itself to the frame through the frozen decoder (``--steps`` Adam
  steps from the encoder's latent): what the decoder could draw if the encoder gave it the right latent.

The gap between the two is the encoder's share of the error, the rest the decoder's. Whole-frame L1 also counts
colour shifts of the background, so a third measure asks what matters for motion: whether the synthetic world's
keypoint estimator still finds the joints after the round trip (PCK at 0.1 body heights on ``--pose-clips`` clips,
4 frames each, all joints and the limb ends alone: wrists and ankles). A decoder-only fine-tune
(``scripts/pretrain_base.py --stage decoder``, latent space unchanged, U-Net still valid) can only remove the
second part. ``latent shift``: how far ``--base``'s encoder moved these frames' latents from the shipped
encoder's (a refitted encoder, ``scripts/pretrain_base.py --stage decoder --encoder-anchor W``; 0 for the shipped base).

Run: .venv/bin/python experiments/vae_heldout.py [--clips 4] [--steps 150] [--threads 1] [--splits train heldout drawn]
     [--base shipped|FOLDER]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

ACTIONS = ("jumping_jack", "squat", "bow", "soccer_shot")


def frames(split: str, clips: int) -> torch.Tensor:
    """(N, 3, 64, 64) in [-1, 1]: every 4th frame of ``clips`` 16-frame clips of ``split`` people."""
    from flashctl_synth.render import render_clip

    videos = [render_clip(ACTIONS[i % len(ACTIONS)], frames=16, size=64, seed=i, split=split)[0][::4]
              for i in range(clips)]  # each (4, 64, 64, 3) uint8
    from flashctl.video import frames_to_tensor

    return frames_to_tensor(np.concatenate(videos))  # (N, 3, 64, 64)


def errors(vae: torch.nn.Module, images: torch.Tensor, steps: int) -> dict[str, float]:
    """Round-trip L1 and the L1 with the latent fitted to each image through the frozen decoder."""
    with torch.no_grad():
        start = vae.encode(images).latent_dist.mode()  # (N, c, h, w)
        round_trip = (vae.decode(start).sample.clamp(-1, 1) - images).abs().mean().item()
    latent = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([latent], lr=5e-2)
    for _ in range(steps):
        loss = (vae.decode(latent).sample - images).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        best = (vae.decode(latent).sample.clamp(-1, 1) - images).abs().mean().item()
    return {"round_trip_l1": round(round_trip, 4), "best_latent_l1": round(best, 4)}


def latent_shift(vae: torch.nn.Module, reference: torch.nn.Module, images: torch.Tensor) -> float:
    """RMS of the two encoders' latent difference in the U-Net's units (latents x scaling factor, about unit std):
    how far a refitted encoder moved these frames from where the U-Net learned them (0 = not at all)."""
    with torch.no_grad():
        moved = vae.encode(images).latent_dist.mode() - reference.encode(images).latent_dist.mode()  # (N, c, h, w)
    return round((moved * reference.config.scaling_factor).pow(2).mean().sqrt().item(), 4)


LIMB_ENDS = ("right_wrist", "left_wrist", "right_ankle", "left_ankle")


def pose_survival(vae: torch.nn.Module, split: str, clips: int) -> dict[str, float]:
    """PCK@0.1 of the keypoint estimator on ``split`` frames before and after the VAE round trip."""
    from flashctl_synth.keypoint_data import render_frames
    from flashctl_synth.keypoint_net import estimate, pck
    from flashctl_synth.skeleton import JOINTS

    images, points, heights = render_frames(split, clips=clips, seed=60_000, per_clip=4)  # (N, 3, 64, 64)
    with torch.no_grad():
        decoded = vae.decode(vae.encode(images).latent_dist.mode()).sample.clamp(-1, 1)  # (N, 3, 64, 64)
    ends = [JOINTS.index(name) for name in LIMB_ENDS]
    result = {}
    for name, x in (("pck", images), ("pck_round_trip", decoded)):
        found = estimate(x)  # (N, J, 2)
        result[name] = round(pck(found, points, heights), 3)
        result[f"{name}_limb_ends"] = round(pck(found[:, ends], points[:, ends], heights), 3)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=4)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--pose-clips", type=int, default=16)
    p.add_argument("--splits", nargs="+", default=["train", "heldout"], choices=("train", "heldout", "drawn"),
                   help="appearance splits to compare (drawn = the outlined cartoon people)")
    p.add_argument("--base", default="shipped",
                   help="the base whose VAE is measured: a base folder (e.g. a pretraining run's OUT/decoder-base)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from flashctl.context import BuildContext
    from flashctl.plugins import build_host

    registry = build_host().registry

    def vae_of(base: str) -> torch.nn.Module:
        return registry.create("backbone", "animatediff", {"base": base}, BuildContext()).vae.requires_grad_(False)

    shipped = vae_of("shipped")
    vae = shipped if args.base == "shipped" else vae_of(args.base)
    result = {}
    for split in args.splits:
        images = frames(split, args.clips)  # (N, 3, 64, 64)
        result[split] = {**errors(vae, images, args.steps), **pose_survival(vae, split, args.pose_clips),
                         "latent_shift": latent_shift(vae, shipped, images)}
    print(json.dumps(result))
    print("| people | round trip L1 | best latent L1 | encoder's share | PCK, frames | PCK, round trip "
          "| limb ends PCK, frames | limb ends PCK, round trip | latent shift vs the shipped encoder |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for split, r in result.items():
        share = 1 - r["best_latent_l1"] / r["round_trip_l1"]
        print(f"| {split} | {r['round_trip_l1']:.4f} | {r['best_latent_l1']:.4f} | {share:.0%} | {r['pck']:.3f} "
              f"| {r['pck_round_trip']:.3f} | {r['pck_limb_ends']:.3f} | {r['pck_round_trip_limb_ends']:.3f} "
              f"| {r['latent_shift']:.3f} |")


if __name__ == "__main__":
    main()
