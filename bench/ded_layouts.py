"""What each Detail Enhancement Decoder layout costs and what it buys, on the shipped tiny base (`base = "shipped"`).

For every layout (a set of ``[options.decoder.detail-enhance]`` values):

* **cost**: the batched decode of 16 frames at 64 px (unfitted, as the sampler calls it) against the stock VAE
  decode of the same latents, timed alternately, minimum of ``--repeat``; the target is <= 1.30x;
* **gain**: the DED fitted (its default steps) on the first frames' references of synthetic training clips,
  then the L1 error of held-out people's frames 1..F-1 decoded from their own latents with their own first
  frame as the reference, against the stock decoder's (``gain`` = 1 - DED / stock: the share of the VAE's error
  the DED removes) and with another held-out clip's reference (it must be worse: the detail comes from the
  reference, not from an average look). Printed first: the stock VAE's round-trip L1 on training-pool and on
  held-out people (the error the DED can at best remove).

Run: .venv/bin/python bench/ded_layouts.py [--repeat 5] [--threads 1] [--clips 8] [--steps 200] [--seeds 0 1 2]
Writes bench/results/ded_layouts.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results"
ACTIONS = ("jumping_jack", "squat", "bow", "soccer_shot")
LAYOUTS: dict[str, dict[str, Any]] = {
    "conv only": {"attention_blocks": [], "conv_blocks": [0, 1, 2]},
    "attention 4 heads, kv 32 (old default)": {"heads": 4, "kv_size": 32},
    "attention 4 heads, kv 8": {"heads": 4, "kv_size": 8},
    "attention 1 head, kv 16": {"heads": 1, "kv_size": 16},
    "attention 1 head, kv 8": {"heads": 1, "kv_size": 8, "conv_blocks": [1, 2]},
    "attention 1 head, kv 8, conv at block 2 only": {"heads": 1, "kv_size": 8, "conv_blocks": [2]},
}


def clips(split: str, n: int, frames: int, size: int) -> torch.Tensor:
    """(n, F, 3, S, S) in [-1, 1]: synthetic clips of ``split`` people, the actions in turn."""
    from flashctl_synth.render import render_clip

    videos = [render_clip(ACTIONS[i % len(ACTIONS)], frames=frames, size=size, seed=i, split=split)[0]
              for i in range(n)]  # each (F, S, S, 3) uint8
    from flashctl.video import frames_to_tensor

    return torch.stack([frames_to_tensor(v) for v in videos])  # (n, F, 3, S, S)


def decode_cost(decoder: Any, backbone: Any, latents: torch.Tensor, reference: torch.Tensor,
                repeat: int) -> dict[str, float]:
    """Minimum seconds of the DED's and the stock VAE's batched decode, called alternately."""
    times: dict[str, list[float]] = {"ded": [], "vae": []}
    calls = {"ded": lambda: decoder.decode(latents, reference), "vae": lambda: backbone.decode_latents(latents)}
    with torch.no_grad():
        for _ in range(repeat + 1):  # the first round warms up
            for name, call in calls.items():
                t0 = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - t0)
    ded, vae = min(times["ded"][1:]), min(times["vae"][1:])
    return {"ded_s": round(ded, 4), "vae_s": round(vae, 4), "ratio": round(ded / vae, 3)}


def vae_error(backbone: Any, videos: torch.Tensor) -> float:
    """L1 of frames 1.. through the stock VAE and back."""
    with torch.no_grad():
        latents = backbone.encode_video(videos)[:, 1:]  # (N, F-1, c, h, w)
        return round((backbone.decode_latents(latents).clamp(-1, 1) - videos[:, 1:]).abs().mean().item(), 5)


def held_out_error(decoder: Any, backbone: Any, held_out: torch.Tensor) -> dict[str, float]:
    """L1 of held-out frames 1.. with the stock decoder, the DED with the own reference and with another's."""
    with torch.no_grad():
        latents = backbone.encode_video(held_out)[:, 1:]  # (N, F-1, c, h, w)
        target, own, other = held_out[:, 1:], held_out[:, 0], held_out[:, 0].roll(1, dims=0)
        stock = vae_error(backbone, held_out)
        fitted = (decoder.decode(latents, own) - target).abs().mean().item()
        swapped = (decoder.decode(latents, other) - target).abs().mean().item()
    return {"stock_l1": stock, "ded_l1": fitted, "other_ref_l1": swapped,
            "gain": 1 - fitted / stock}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clips", type=int, default=8, help="training clips (and half as many held-out clips)")
    p.add_argument("--steps", type=int, default=None, help="fitting steps (default: the decoder's)")
    p.add_argument("--layouts", nargs="*", default=list(LAYOUTS), choices=list(LAYOUTS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="fitting seeds (the held-out figures are averaged)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from flashctl.context import BuildContext
    from flashctl.model.detail_decoder import fit_detail_decoder
    from flashctl.plugins import build_host

    host = build_host()
    backbone = host.registry.create("backbone", "animatediff", {"base": "shipped"}, BuildContext())
    frames, size = 16, 64
    train, held_out = clips("train", args.clips, frames, size), clips("heldout", max(2, args.clips // 2), frames, size)
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, frames, 4, size // 4, size // 4, generator=g)  # (1, F, c, h, w)
    reference = held_out[:1, 0]  # (1, 3, S, S)
    vae_l1 = {"train": vae_error(backbone, train), "heldout": vae_error(backbone, held_out)}
    print(f"stock VAE round trip L1: training-pool people {vae_l1['train']:.4f}, held-out people {vae_l1['heldout']:.4f}")
    rows = []
    for name in args.layouts:
        fits = []
        for seed in args.seeds:
            decoder = host.registry.create("decoder", "detail-enhance", LAYOUTS[name], BuildContext())
            decoder.attach(backbone)
            cost = decode_cost(decoder, backbone, latents, reference, args.repeat) if not fits else cost
            t0 = time.perf_counter()
            history = fit_detail_decoder(decoder, train, steps=args.steps, seed=seed)
            fits.append({"fit_s": time.perf_counter() - t0, "fit_loss_last": float(np.mean(history[-20:])),
                         **held_out_error(decoder, backbone, held_out)})
        mean = {k: round(float(np.mean([f[k] for f in fits])), 5) for k in fits[0]}
        spread = {f"{k}_std": round(float(np.std([f[k] for f in fits])), 5) for k in ("ded_l1", "gain")}
        rows.append({"layout": name, "options": LAYOUTS[name], **cost, **mean, **spread, "seeds": args.seeds,
                     "load1": round(os.getloadavg()[0], 2)})
        print(json.dumps(rows[-1]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ded_layouts.json").write_text(json.dumps({"rows": rows, "vae_l1": vae_l1, "args": vars(args)}, indent=1))
    print(f"\n| layout | decode s | stock s | ratio (target 1.30) | held-out L1 stock | DED | other ref | gain | fit s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['layout']} | {r['ded_s']:.4f} | {r['vae_s']:.4f} | {r['ratio']:.2f} | {r['stock_l1']:.4f} | "
              f"{r['ded_l1']:.4f} ± {r['ded_l1_std']:.4f} | {r['other_ref_l1']:.4f} | {r['gain']:.3f} ± {r['gain_std']:.3f} | "
              f"{r['fit_s']:.0f} |")


if __name__ == "__main__":
    main()
