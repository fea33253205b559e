"""Train the synthetic world's keypoint estimator and ship it with its accuracy (one CPU thread, ~13 minutes).

    python scripts/train_keypoints.py [--steps 1500] [--clips 4000] [--out plugins/flashctl_synth/weights]

Renders ``clips`` short clips (4 frames at random phases, every action) of the ``pose`` appearance split,
which no evaluation uses; passes a quarter of them through the shipped tiny VAE; trains
:class:`flashctl_synth.keypoint_net.KeypointNet` on randomly degraded batches (L1 on joint positions in body
heights); then writes ``keypoints.safetensors`` and ``provenance.json`` (command, steps, seconds, PCK at 0.1
body height on held-out-pool frames: clean, blurred, VAE round trip).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

from flashctl_synth.keypoint_data import VaeRoundTrip, accuracy, augment, render_frames
from flashctl_synth.keypoint_net import KeypointNet

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--clips", type=int, default=4000, help="training clips of 4 frames each")
    p.add_argument("--vae-fraction", type=float, default=0.25, help="share of training frames round-tripped "
                                                                       "through the tiny VAE")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--eval-clips", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "plugins" / "flashctl_synth" / "weights")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    start = time.time()

    frames, points, heights = render_frames("pose", args.clips, seed=args.seed)  # (N, 3, 64, 64), (N, J, 2), (N,)
    vae = VaeRoundTrip()
    n_vae = int(args.vae_fraction * len(frames))
    frames[:n_vae] = vae(frames[:n_vae])
    print(f"{len(frames)} frames ready ({n_vae} through the VAE) in {time.time() - start:.0f}s", flush=True)

    net = KeypointNet(args.width)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / args.steps)))
    gen = torch.Generator().manual_seed(args.seed)
    for step in range(1, args.steps + 1):
        idx = torch.randint(len(frames), (args.batch,), generator=gen)
        predicted = net(augment(frames[idx], gen))                                # (B, J, 2)
        loss = ((predicted - points[idx]).abs().sum(-1) / heights[idx, None]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0:
            print(f"step {step} loss {loss.item():.4f} ({time.time() - start:.0f}s)", flush=True)
    train_seconds = time.time() - start

    scores = accuracy(net, args.eval_clips, vae=vae)
    print(json.dumps(scores), flush=True)
    from safetensors.torch import save_file

    args.out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(args.out / "keypoints.safetensors"))
    record = {
        "command": "python " + " ".join([str(Path(sys.argv[0]).relative_to(ROOT) if Path(sys.argv[0]).is_absolute()
                                             else sys.argv[0])] + sys.argv[1:]),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "out"},
        "training": {"split": "pose", "frames": len(frames), "vae_frames": n_vae, "steps": args.steps,
                     "seconds": round(train_seconds), "final_loss": round(loss.item(), 4), "threads": 1},
        "evaluation": {"split": "heldout", "frames": 4 * args.eval_clips, "seeds_from": 10_000,
                       "metric": "PCK: share of joints within 0.1 of the standing body height",
                       "blur": "gaussian, sigma in pixels at 64 px", "vae": "tiny-base VAE encode (mode) + decode",
                       **scores},
        "seconds_total": round(time.time() - start),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
    }
    (args.out / "provenance.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out} in {time.time() - start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
