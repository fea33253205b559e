"""Seconds per training step: flashctl's plain fine-tune (#1) vs a minimal hand-written diffusers loop.

Run: .venv/bin/python bench/train_loop.py [--frames 16] [--size 64] [--clips 4] [--steps 10] [--warmup 2]
                                          [--repeat 3] [--threads 1]
Three variants on the same tiny AnimateDiff components (``options.backbone.animatediff`` defaults, fp32),
the same LoRA (rank 8, alpha 8, the backbone's targets), the same AdamW (lr 1e-4), batches of ``--clips``
videos from the same synthetic clips, no augmentation (ablation row #1):

* ``flashctl train()``: ``flashctl.pipeline.train.train`` itself (accelerate-prepared optimizer,
  ``flash.training_loss``, ``accelerator.backward``, step), timed between its per-step ``advance`` events
  by ``bench/train_step.py``'s ``run_one``;
* ``hand, cross-frame``: the few lines a user writes (peft ``inject_adapter_in_model``, ``DDPMScheduler.add_noise``,
  frame 0 kept clean, MSE on frames 1..F-1, ``loss.backward()``, ``AdamW.step()``) on the U-Net with flashctl's
  cross-frame processors installed: same architecture, so flashctl / this is the loop's overhead (target <= 1.10);
* ``hand, stock``: the same loop on the stock ``UNetMotionModel`` (diffusers' own attention processors): flashctl /
  this adds the cost of cross-frame attention, an architecture choice, not overhead.

Each run is a fresh process (runs alternate between variants to spread out noise from other processes); the
first ``--warmup`` steps are dropped. Before timing, one check in this process asserts that the hand loop
does flashctl's work: the same latents, the same LoRA parameter count and, on the cross-frame U-Net, the same
loss for the same noise and timesteps. Prints a table with the 1-minute load average and writes
bench/results/train_loop.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from train_step import _clips, run_one

FLASHCTL, HAND_CROSS, HAND_STOCK = "flashctl train()", "hand, cross-frame", "hand, stock"
VARIANTS = (FLASHCTL, HAND_CROSS, HAND_STOCK)
PROMPT = "a square slides right"  # bench/train_step.run_one's manifest prompt
TARGET = 1.10


def hand_setup(cross_frame: bool, args: argparse.Namespace):
    """What a user builds by hand -> unet, LoRA params, latents (B, F, c, h, w), context (B*F, seq, dim), scheduler."""
    import torch
    from diffusers import DDPMScheduler, UNetMotionModel
    from flashctl_animatediff import AnimateDiffOptions
    from flashctl_animatediff.backbone import FEED_FORWARD_TARGET, LORA_TARGETS, TEMPORAL_ATTN
    from flashctl_animatediff.components import tiny_components
    from peft import LoraConfig, inject_adapter_in_model

    from flashctl.model.cross_frame import set_num_frames, split_attention

    parts = tiny_components(AnimateDiffOptions())
    unet = UNetMotionModel.from_unet2d(parts.unet2d, parts.adapter)
    if cross_frame:
        split_attention(unet, TEMPORAL_ATTN)
        set_num_frames(unet, args.frames)
    unet.requires_grad_(False)
    targets = [*LORA_TARGETS, FEED_FORWARD_TARGET]  # the default: motion modules' attention and feed-forward
    inject_adapter_in_model(LoraConfig(r=8, lora_alpha=8, target_modules="|".join(targets)), unet)
    params = [p for n, p in unet.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)

    video = torch.from_numpy(_clips(args.clips, args.frames, args.size)).float() / 127.5 - 1  # (B, F, S, S, 3)
    with torch.no_grad():
        pixels = video.permute(0, 1, 4, 2, 3).flatten(0, 1)  # (B*F, 3, S, S)
        latents = parts.vae.encode(pixels).latent_dist.mode() * parts.vae.config.scaling_factor  # (B*F, c, h, w)
        ids = parts.tokenizer([PROMPT], padding="max_length", max_length=parts.tokenizer.model_max_length,
                              return_tensors="pt").input_ids  # (1, seq)
        prompt = parts.text_encoder(ids)[0]  # (1, seq, dim)
    latents = latents.view(args.clips, args.frames, *latents.shape[1:])  # (B, F, c, h, w)
    context = prompt.repeat(args.clips * args.frames, 1, 1)  # (B*F, seq, dim)
    scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False)
    return unet, params, latents, context, scheduler


def hand_loss(unet, scheduler, latents, noise, timesteps, context):
    """MSE between the predicted and the true noise on frames 1..F-1; frame 0 enters clean."""
    import torch
    import torch.nn.functional as F

    noisy = scheduler.add_noise(latents, noise, timesteps)  # (B, F, c, h, w)
    noisy = torch.cat([latents[:, :1], noisy[:, 1:]], dim=1)
    pred = unet(noisy.transpose(1, 2), timesteps, encoder_hidden_states=context).sample  # (B, c, F, h, w)
    pred = pred.transpose(1, 2)  # (B, F, c, h, w)
    return F.mse_loss(pred[:, 1:], noise[:, 1:])


def run_hand(variant: str, args: argparse.Namespace) -> dict:
    """Train the hand-written loop in this process; returns its step times and peak RSS."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    unet, params, latents, context, scheduler = hand_setup(variant == HAND_CROSS, args)
    unet.train()
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    stamps = [time.perf_counter()]
    for _ in range(args.warmup + args.steps):
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],))
        loss = hand_loss(unet, scheduler, latents, noise, timesteps, context)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        loss.item()  # a hand loop logs its loss too
        stamps.append(time.perf_counter())
    steps = [b - a for a, b in itertools.pairwise(stamps)][args.warmup:]
    return {"variant": variant, "batch_size": args.clips, "step_s": [round(s, 4) for s in steps],
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "threads": torch.get_num_threads()}


def check_same_work(args: argparse.Namespace) -> dict:
    """flashctl's backbone (as train() builds it) and the hand setup: latents, LoRA size and loss must agree."""
    import torch

    from flashctl.config import FlashConfig
    from flashctl.context import context_for
    from flashctl.model.flash import denoising_loss
    from flashctl.model.lora import add_motion_lora
    from flashctl.model.motion_model import MotionModel
    from flashctl.plugins import build_host
    from flashctl.video import frames_to_tensor

    small = argparse.Namespace(**{**vars(args), "clips": 2, "frames": min(args.frames, 4), "size": 32})
    random_base = {"backbone": {"animatediff": {"preset": "tiny"}}}  # no base: the random weights the hand setup has
    config, host = FlashConfig.model_validate({"options": random_base}), build_host()
    backbone = MotionModel.build(config, host, context_for(config, host), training=True).backbone
    frames = _clips(small.clips, small.frames, small.size)
    latents = torch.cat([backbone.encode_video(frames_to_tensor(c)[None]) for c in frames])  # (B, F, c, h, w)
    prompt = backbone.encode_prompt([PROMPT])  # (1, seq, dim)
    lora = sum(p.numel() for p in add_motion_lora(backbone, config.train.lora_rank, config.train.lora_alpha))
    result = {}
    for variant, cross in ((HAND_CROSS, True), (HAND_STOCK, False)):
        unet, params, hand_latents, context, scheduler = hand_setup(cross, small)
        hand_lora = sum(p.numel() for p in params)
        if hand_lora != lora or not torch.allclose(hand_latents, latents, atol=1e-5):
            raise AssertionError(f"{variant}: LoRA {hand_lora} vs flashctl {lora} parameters, latents differ by "
                                 f"{(hand_latents - latents).abs().max():.2e}")
        noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(1))  # (B, F, c, h, w)
        timesteps = torch.tensor([10, 700])
        with torch.no_grad():
            ours = denoising_loss(backbone, backbone.objective, latents, noise, timesteps,
                                  prompt).mean()
            theirs = hand_loss(unet, scheduler, latents, noise, timesteps, context)
        result[variant] = {"lora_params": hand_lora, "loss": round(theirs.item(), 6),
                           "flashctl_loss": round(ours.item(), 6)}
        if cross and not torch.allclose(ours, theirs, rtol=1e-5):
            raise AssertionError(f"{variant}: loss {theirs.item()} vs flashctl {ours.item()} on the same inputs")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--clips", type=int, default=4, help="videos per step")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant, alternating")
    parser.add_argument("--threads", type=int, default=1, help="torch threads; 0 = torch's default")
    parser.add_argument("--one", choices=VARIANTS, help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if args.one == FLASHCTL:
        shared = {**vars(args), "library_clips": args.clips, "no_vae_slicing": False}
        print(json.dumps({**run_one("#1 plain", argparse.Namespace(**shared)), "variant": FLASHCTL}))
        return
    if args.one:
        print(json.dumps(run_hand(args.one, args)))
        return

    checked = check_same_work(args)
    child = [sys.executable, __file__, *sys.argv[1:]]
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for _ in range(args.repeat):
        for variant in VARIANTS:
            out = subprocess.run([*child, "--one", variant], capture_output=True, text=True, check=True)
            runs[variant].append({**json.loads(out.stdout.strip().splitlines()[-1]),
                                  "load1": round(os.getloadavg()[0], 2)})
    rows = []
    for variant, results in runs.items():
        steps = [s for r in results for s in r["step_s"]]
        rows.append({"variant": variant, "median_step_s": round(statistics.median(steps), 4),
                     "min_step_s": round(min(steps), 4), "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
                     "timed_steps": len(steps), "load1": [r["load1"] for r in results]})
    ours = rows[0]["median_step_s"]
    for row in rows:
        row["flashctl_over_this"] = round(ours / row["median_step_s"], 3)
    overhead = rows[1]["flashctl_over_this"]
    print(f"tiny AnimateDiff, {args.frames} frames of {args.size} px, {args.clips} clips per step, fp32, plain (#1), "
          f"threads={runs[FLASHCTL][0]['threads']}; flashctl / hand cross-frame = loop overhead, target <= {TARGET}")
    print(f"{'variant':<18} {'median_s':>9} {'min_s':>7} {'flashctl/x':>10} {'peak_rss_mb':>11}  load1 per run")
    for r in rows:
        print(f"{r['variant']:<18} {r['median_step_s']:>9.3f} {r['min_step_s']:>7.3f} {r['flashctl_over_this']:>10.3f} "
              f"{r['peak_rss_mb']:>11.0f}  {' '.join(f'{x:.2f}' for x in r['load1'])}")
    result = {"args": {k: v for k, v in vars(args).items() if k != "one"}, "target_ratio": TARGET,
              "same_work_check": checked, "rows": rows, "loop_overhead_ratio": overhead,
              "cross_frame_cost_ratio": round(rows[1]["median_step_s"] / rows[2]["median_step_s"], 3),
              "within_target": overhead <= TARGET}
    out = Path(__file__).parent / "results" / "train_loop.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
