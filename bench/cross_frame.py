"""Cross-frame attention's cost: flashctl's processors vs stock diffusers attention on the same tiny-preset weights.

For each size (default 32, 64, 128 px; 16 frames) one ``Animator.render`` (the bench/animate.py setup: plain
VAE decoder, guidance 1, no anchoring, pure-noise start) is timed with the U-Net's spatial self-attention
layers running

* ``flashctl``: :class:`CrossFrameAttnProcessor` (frame f attends to [frame 0, frame f]: the method, 2N keys),
* ``stock``: diffusers' ``AttnProcessor2_0`` (frame f attends to itself: N keys; what AnimateDiff does),
* ``frame0_only`` (an option, NOT the method): frame f attends to frame 0's tokens only (N keys). Its output
  change against ``flashctl`` is reported: uint8 levels of the rendered video (mean, max) and the relative L2
  change of one U-Net forward's output (random latents, t = 500), the same for ``stock``.

A second table times one spatial self-attention layer's parts (projection, the frame-context concatenation,
the attention over 2N keys, the stock layer) at the largest size's first-level and mid-block shapes, and an
exact cheaper form: frame 0's rows on N keys only (``split_frame0``, same outputs).

The variants are timed alternately (flashctl, stock, frame0_only, flashctl, ...) after one warm-up each;
each row gives the median seconds and the spread (max - min) over ``--repeat`` renders, the 1-minute load
average, and the share of the render spent inside the spatial self-attention layers (forward hooks on them).
The machine may be shared: the figures are as noisy as its load.

Run: .venv/bin/python bench/cross_frame.py [--sizes 32 64 128] [--frames 16] [--steps 4] [--repeat 3]
     [--layer-repeat 7] [--part render layer]
Writes bench/results/cross_frame.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from animate import RESULTS, SAME_WORK, animator
from flashctl.model.cross_frame import CrossFrameAttnProcessor

VARIANTS = ("flashctl", "stock", "frame0_only")


class FrameZeroOnly(CrossFrameAttnProcessor):
    """Bench-only option: frame f's queries meet frame 0's keys/values alone (changes the outputs)."""

    def frame_context(self, x: torch.Tensor) -> torch.Tensor:
        """(B*F, heads, N, d) -> (B*F, heads, N, d): frame 0's tokens for every frame."""
        first = x.unflatten(0, (-1, self.num_frames))[:, :1]  # (B, 1, heads, N, d)
        return first.expand(-1, self.num_frames, -1, -1, -1).flatten(0, 1)


class AttentionClock:
    """Seconds spent inside the given modules (forward pre/post hooks), summed until :meth:`reset`."""

    def __init__(self, modules: list[torch.nn.Module]) -> None:
        self.seconds, self._start = 0.0, 0.0
        for m in modules:
            m.register_forward_pre_hook(self._enter)
            m.register_forward_hook(self._leave)

    def _enter(self, *_: Any) -> None:
        self._start = time.perf_counter()

    def _leave(self, *_: Any) -> None:
        self.seconds += time.perf_counter() - self._start

    def reset(self) -> None:
        self.seconds = 0.0


def processors(unet: torch.nn.Module, spatial: list[str], variant: str, frames: int) -> dict[str, Any]:
    """The U-Net's processor map with the spatial self-attention layers set to ``variant``."""
    make = {"flashctl": lambda: CrossFrameAttnProcessor(frames), "stock": AttnProcessor2_0,
            "frame0_only": lambda: FrameZeroOnly(frames)}[variant]
    return {n: make() if n in spatial else p for n, p in unet.attn_processors.items()}


def measure(host: Any, frames: int, size: int, steps: int, repeat: int) -> dict[str, Any]:
    anim = animator(host, "vae", frames, size, steps, **SAME_WORK)
    backbone = anim.model.backbone
    unet, spatial = backbone.unet, backbone.spatial_attention
    maps = {v: processors(unet, spatial, v, frames) for v in VARIANTS}
    clock = AttentionClock([unet.get_submodule(n.removesuffix(".processor")) for n in spatial])
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    shares: dict[str, list[float]] = {v: [] for v in VARIANTS}
    videos: dict[str, np.ndarray] = {}
    for i in range(repeat + 1):  # round 0 warms up
        for v in VARIANTS:
            unet.set_attn_processor(dict(maps[v]))  # diffusers empties the dict it is given
            clock.reset()
            t0 = time.perf_counter()
            videos[v] = anim.render(image, seed=0)  # (F, S, S, 3) uint8
            seconds = time.perf_counter() - t0
            if i:
                times[v].append(seconds)
                shares[v].append(clock.seconds / seconds)
    latents = torch.randn(1, frames, backbone.geometry()["latent_channels"], size // 4, size // 4,
                          generator=torch.Generator().manual_seed(0))  # (1, F, c, h, w); the tiny preset downsamples 4x
    prompt = backbone.encode_prompt(["a person waves"])  # (1, seq, dim)
    eps = {}
    for v in VARIANTS:  # one U-Net forward per variant: the output change before decoding and rounding
        unet.set_attn_processor(dict(maps[v]))
        with torch.no_grad():
            eps[v] = backbone.denoise(latents, torch.tensor([500]), prompt)  # (1, F, c, h, w)
    unet.set_attn_processor(dict(maps["flashctl"]))
    load = round(os.getloadavg()[0], 2)
    rows = {v: {"median_s": round(statistics.median(times[v]), 3), "spread_s": round(max(times[v]) - min(times[v]), 3),
                "spatial_attn_share": round(statistics.median(shares[v]), 3)} for v in VARIANTS}
    ref = videos["flashctl"].astype(np.int16)
    for v in ("stock", "frame0_only"):
        diff = np.abs(videos[v].astype(np.int16) - ref)
        per_round = [a / b for a, b in zip(times["flashctl"], times[v])]  # same round: the load hits both alike
        rows[v].update(ratio_flashctl_to_this=round(statistics.median(per_round), 3),
                       ratio_spread=round(max(per_round) - min(per_round), 3),
                       mean_uint8_diff_to_flashctl=round(float(diff.mean()), 2), max_uint8_diff_to_flashctl=int(diff.max()),
                       unet_rel_diff_to_flashctl=round(float((eps[v] - eps["flashctl"]).norm() / eps["flashctl"].norm()), 4))
    return {"size": size, "frames": frames, "steps": steps, "repeat": repeat, "load1": load, **rows}


def layer_parts(frames: int, tokens: int, channels: int, heads: int, repeat: int) -> dict[str, Any]:
    """One spatial self-attention layer on random weights, its parts timed alternately: where the cross-frame
    cost sits, and whether an exact cheaper form exists. ``split_frame0`` runs frame 0's rows on N keys (its
    context [frame 0, frame 0] holds each key twice, which softmax cancels) and the others on 2N."""
    import torch.nn.functional as F
    from diffusers.models.attention_processor import Attention

    gen = torch.Generator().manual_seed(0)
    attn = Attention(query_dim=channels, heads=heads, dim_head=channels // heads).eval()
    x = torch.randn(frames, tokens, channels, generator=gen)  # (F, N, C): one video
    proc, stock = CrossFrameAttnProcessor(frames), AttnProcessor2_0()
    q, k, v = proc.project(attn, x)  # each (F, heads, N, d)
    kc, vc = proc.frame_context(k), proc.frame_context(v)  # each (F, heads, 2N, d)

    def split_frame0() -> torch.Tensor:
        first = F.scaled_dot_product_attention(q[:1], k[:1], v[:1])  # (1, heads, N, d)
        return torch.cat([first, F.scaled_dot_product_attention(q[1:], kc[1:], vc[1:])])  # (F, heads, N, d)

    parts = {"stock layer": lambda: stock(attn, x), "cross-frame layer": lambda: proc(attn, x),
             "q/k/v projection": lambda: proc.project(attn, x),
             "frame context (cat)": lambda: (proc.frame_context(k), proc.frame_context(v)),
             "attention, 2N keys": lambda: F.scaled_dot_product_attention(q, kc, vc),
             "split_frame0 attention": split_frame0}
    times: dict[str, list[float]] = {n: [] for n in parts}
    with torch.no_grad():
        for i in range(repeat + 1):  # round 0 warms up
            for name, fn in parts.items():
                t0 = time.perf_counter()
                fn()
                if i:
                    times[name].append(time.perf_counter() - t0)
        split_diff = float((split_frame0() - F.scaled_dot_product_attention(q, kc, vc)).abs().max())
    return {"frames": frames, "tokens": tokens, "channels": channels, "heads": heads, "load1": round(os.getloadavg()[0], 2),
            "split_frame0_max_abs_diff": split_diff,
            "parts_ms": {n: {"median": round(statistics.median(t) * 1e3, 2), "spread": round((max(t) - min(t)) * 1e3, 2)}
                         for n, t in times.items()}}


def main(argv: list[str] | None = None) -> int:
    from flashctl.plugins import build_host

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: steadier on a shared box)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--part", nargs="+", choices=("render", "layer"), default=["render", "layer"])
    parser.add_argument("--layer-repeat", type=int, default=7, help="rounds of the one-layer parts table")
    parser.add_argument("--out", type=Path, default=RESULTS / "cross_frame.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    host = build_host()
    rows = [measure(host, args.frames, size, args.steps, args.repeat) for size in args.sizes] \
        if "render" in args.part else []
    top = max(args.sizes) // 4  # the tiny preset's first level: latent side, 32 channels, 8 heads
    layers = [layer_parts(args.frames, top * top, 32, 8, args.layer_repeat),
              layer_parts(args.frames, (top // 2) ** 2, 64, 8, args.layer_repeat)] \
        if "layer" in args.part else []  # ... and its mid block
    result = {"torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
              "rows": rows, "layer": layers}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if rows:
        print(f"render, {args.frames} frames, {args.steps} steps, torch threads {result['torch_threads']}; "
              f"median and spread (max-min) of {args.repeat}, variants alternated; attn = share in spatial self-attention")
        print("flashctl/x = median over rounds of flashctl's time / x's in the same round (its spread beside it)")
        print(f"{'px':>4} {'variant':<12} {'median s':>9} {'spread':>7} {'attn':>6} {'flashctl/x':>10} {'spread':>6} "
              f"{'mean diff':>9} {'max diff':>8} {'U-Net rel':>9} {'load1':>6}")
        for row in rows:
            for v in VARIANTS:
                r = row[v]
                extra = (f"{r['ratio_flashctl_to_this']:>10.3f} {r['ratio_spread']:>6.3f} "
                         f"{r['mean_uint8_diff_to_flashctl']:>9.2f} "
                         f"{r['max_uint8_diff_to_flashctl']:>8d} {r['unet_rel_diff_to_flashctl']:>9.4f}") \
                    if v != "flashctl" else f"{'':>10} {'':>6} {'':>9} {'':>8} {'':>9}"
                print(f"{row['size']:>4} {v:<12} {r['median_s']:>9.3f} {r['spread_s']:>7.3f} "
                      f"{r['spatial_attn_share']:>6.3f} {extra} {row['load1']:>6.2f}")
    for layer in layers:
        print(f"one spatial self-attention layer, {layer['frames']} frames x {layer['tokens']} tokens x "
              f"{layer['channels']} channels, {layer['heads']} heads (ms, median and spread of {args.layer_repeat}, "
              f"load1 {layer['load1']}); split_frame0 max |diff| {layer['split_frame0_max_abs_diff']:.1e}")
        for name, t in layer["parts_ms"].items():
            print(f"  {name:<24} {t['median']:>9.2f} {t['spread']:>8.2f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
