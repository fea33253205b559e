"""How much of a real motion survives the tiny VAE and animate's anchoring, seen by the pose metric.

Real held-out synthetic clips go through the project's VAE and back (no denoising), then through
``anchor_to_reference`` at each tolerance. Printed per action: keypoint displacement correlation with the
real clip (``keypoints/correlation``, the ceiling a perfect denoiser could reach) and mean absolute pixel
error. Run: ``.venv/bin/python experiments/anchor_check.py [--actions bow jump] [--people 6]``
"""

from __future__ import annotations

import argparse
import statistics

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--actions", nargs="+", default=["bow", "side_bend", "soccer_shot", "jump"])
    p.add_argument("--people", type=int, default=6, help="held-out people per action")
    p.add_argument("--tolerances", type=float, nargs="+", default=[0.0, 0.1, 0.2])
    p.add_argument("--config", default="flashctl.toml")
    args = p.parse_args()
    torch.set_num_threads(1)

    from flashctl.config import load_config
    from flashctl.context import context_for
    from flashctl.model.flash import anchor_to_reference
    from flashctl.model.motion_model import MotionModel
    from flashctl.plugins import host_for
    from flashctl_synth.keypoint_metric import keypoint_error
    from flashctl_synth.keypoint_net import to_tensor
    from flashctl_synth.render import render_clip

    config = load_config(args.config)
    host = host_for(config)
    backbone = MotionModel.build(config, host, context_for(config, host)).backbone
    columns = ["VAE round trip"] + [f"anchor tol {t:g}" for t in args.tolerances]
    print("| action | " + " | ".join(f"{c} corr / err" for c in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for action in args.actions:
        scores: list[list[tuple[float, float]]] = [[] for _ in columns]
        for seed in range(100, 100 + args.people):
            clip, _ = render_clip(action, frames=16, size=64, seed=seed, split="heldout", canonical=True)
            real = to_tensor(clip)  # (F, 3, S, S) in [-1, 1]
            with torch.no_grad():
                decoded = backbone.decode_latents(backbone.encode_video(real[None])).float()  # (1, F, 3, S, S)
            videos = [decoded[0]] + [anchor_to_reference(decoded, real[:1], t)[0] for t in args.tolerances]
            for column, video in zip(scores, videos):
                column.append((keypoint_error(video, reference=real[0], target=real)["correlation"],
                               float((video - real).abs().mean())))
        cells = [f"{statistics.fmean(c for c, _ in s):.3f} / {statistics.fmean(e for _, e in s):.3f}" for s in scores]
        print(f"| {action} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
