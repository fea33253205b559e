"""Wan backbone costs: the MAM training step vs plain at equal videos, and flashctl's render vs the stock pipeline.

Run: .venv/bin/python bench/wan.py [--part step train render] [--clips 4] [--frames 17] [--size 64]
                                   [--steps 6] [--warmup 1] [--repeat 3] [--render-steps 20] [--threads 1]
                                   [--layers 4] [--heads 4] [--head-dim 32] [--ffn-dim 512]

Every part uses the ``wan`` backbone's tiny preset grown to a small DiT (default: 4 blocks of width 4 x 32 = 128,
feed-forward 512; the tiny test preset is 2 blocks of width 32), random weights, 4k+1 frames, no LoRA trained.

* **step**: the optimizer step alone, as ``train()`` runs it once the augmented copies are encoded (the real
  presets' ``train.augment_bank = 8``): ``MotionModel.training_loss`` inside ``aligned()``, ``backward``,
  ``AdamW.step``, on pre-encoded latents. ``#1 plain`` is a batch of ``--clips`` videos; ``#5 MAM`` is
  ``--clips / 2`` originals plus as many augmented copies ``[x; x~]`` with motion + correspondence alignment on
  every block's ``attn1``. Two models (same base, same LoRA init), one step of each in turn, ``--steps`` each
  after ``--warmup``. Target: #5 / #1 <= 1.15.
* **train**: ``flashctl.pipeline.train.train`` end to end in a fresh process per run (as bench/train_step.py),
  timed between the reporter's per-step events, with the tiny preset's ``augment_bank = 0``: #2 and #5 VAE-encode
  fresh augmented copies inside every step. ``#2 augment`` (the copies without MAM) separates that encode from
  MAM's own cost. ``--repeat`` runs per variant, alternating.
* **render**: flashctl's ``Animator.render`` (uint8 image in, uint8 frames out) vs the stock
  ``WanImageToVideoPipeline`` on the same VAE, text encoder and transformer weights, built as for Wan2.2-TI2V
  (``expand_timesteps``: the image's latent is latent frame 0 at timestep 0, the conditioning flashctl's tiny
  preset uses), same Euler flow-matching scheduler (shift 3), steps, guidance (1: off), prompt embedding and
  starting noise. The stock pipeline runs twice: with diffusers' ``WanAttnProcessor`` on ``attn1`` (a copy of
  the transformer: the stock model) and on flashctl's transformer as it is (flashctl's ``attn1`` processor),
  which splits the loop's cost from the processor's. ``--repeat`` calls each, alternating, after one warm-up;
  the videos are compared (same work: the same frames). Target: flashctl / stock <= 1.05. Beside them, what
  users run: ``animate``'s defaults (guidance 4, anchoring, reference start, the ``vae`` decoder) with the one
  setting a wan motion needs, ``scheduler = "euler"``.

Prints median, min and max seconds with the 1-minute load average (the machine may be shared: compare figures
at low load only) and writes bench/results/wan.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from train_step import _clips, timed_train

RESULTS = Path(__file__).parent / "results"
PROMPT = "a person waves"
OFF = {"motion_align": False, "correspondence_align": False}
VARIANTS = {  # name -> [train] switches; batch_size is set from --clips
    "#1 plain": {"strong_augment": False, "mam": OFF},
    "#2 augment": {"strong_augment": True, "mam": OFF},
    "#5 MAM": {"strong_augment": True, "mam": {"motion_align": True, "correspondence_align": True}},
}
STEP_VARIANTS = ("#1 plain", "#5 MAM")
TRAIN_TARGET, RENDER_TARGET = 1.15, 1.05


def wan_options(args: argparse.Namespace) -> dict[str, Any]:
    """``[options.backbone.wan]``: the tiny preset with the bench's transformer size."""
    return {"layers": args.layers, "heads": args.heads, "head_dim": args.head_dim, "ffn_dim": args.ffn_dim}


def wan_config(args: argparse.Namespace, **sections: Any) -> Any:
    from flashctl.config import FlashConfig

    return FlashConfig.model_validate({
        "model": {"backbone": "wan"}, "options": {"backbone": {"wan": wan_options(args)}},
        "prepare": {"frames": args.frames, "size": args.size, "fps": 8.0}, **sections})


def spread(times: list[float]) -> dict[str, Any]:
    return {"median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4),
            "max_s": round(max(times), 4), "n": len(times)}


def paired(times: dict[str, Any], over: str, base: str) -> dict[str, float]:
    """Median, min and max of the per-round ratios ``over / base`` (calls of one round ran back to back)."""
    ratios = [a / b for a, b in zip(times[over]["s"], times[base]["s"])]
    return {"median": round(statistics.median(ratios), 3), "min": round(min(ratios), 3),
            "max": round(max(ratios), 3)}


def alternate(calls: dict[str, Callable[[], Any]], repeat: int,
              warmup: int = 1) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Seconds of each call, measured in turn (a, b, c, a, b, c, ...) after ``warmup`` rounds, with the load
    average after each round; and each call's last result."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    loads, last = [], {}
    for round_ in range(warmup + repeat):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            last[name] = fn()
            if round_ >= warmup:
                times[name].append(time.perf_counter() - t0)
        if round_ >= warmup:
            loads.append(round(os.getloadavg()[0], 2))
    return {name: {**spread(t), "s": [round(x, 4) for x in t], "load1": loads} for name, t in times.items()}, last


# -- part 1: training step ---------------------------------------------------------------------------------


def step_loop(args: argparse.Namespace) -> dict[str, Any]:
    """Optimizer steps of #1 and #5 on pre-encoded latents (the augment bank's way), alternating step by step.

    Each variant is its own ``MotionModel`` (same base weights, same LoRA init); a step is what ``train()``
    runs: ``training_loss`` inside ``aligned()``, ``backward``, ``AdamW.step``.
    """
    import torch

    from flashctl.context import BuildContext
    from flashctl.model.motion_alignment import aligned
    from flashctl.model.motion_model import MotionModel
    from flashctl.pipeline.train import motion_augmentations
    from flashctl.plugins import build_host
    from flashctl.video import frames_to_tensor

    host, half = build_host(), args.clips // 2
    generator = torch.Generator().manual_seed(0)
    models = {}
    for variant in STEP_VARIANTS:
        config = wan_config(args, train={**VARIANTS[variant], "lr": 1e-4})
        model = MotionModel.build(config, host, BuildContext(), training=True)
        torch.manual_seed(0)  # the same LoRA init in both
        params = model.add_motion(config.train.lora_rank, config.train.lora_alpha)
        model.align(config.train.mam)
        model.backbone.unet.train()
        models[variant] = (model, torch.optim.AdamW(params, lr=config.train.lr), config)
    backbone = models["#1 plain"][0].backbone
    clips = torch.stack([frames_to_tensor(c) for c in _clips(args.clips, args.frames, args.size)])  # (N, F, 3, S, S)
    latents = backbone.encode_video(clips)  # (N, F', c, h, w)
    augment = motion_augmentations(models["#5 MAM"][2], models["#5 MAM"][2].train, host, BuildContext())
    copies = backbone.encode_video(torch.stack([augment[i % len(augment)][1](clips[i], generator)
                                                for i in range(half)]))  # (N/2, F', c, h, w)
    prompt_emb = backbone.encode_prompt([PROMPT])  # (1, seq, dim)
    batches = {"#1 plain": (latents, None), "#5 MAM": (latents[:half], copies)}

    def step(variant: str) -> None:
        model, optimizer, _ = models[variant]
        x, x_aug = batches[variant]
        with aligned(model.backbone.unet):
            loss = model.training_loss(x, prompt_emb, generator, augmented=x_aug)
            loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    timed, _ = alternate({v: (lambda v=v: step(v)) for v in STEP_VARIANTS}, args.steps, args.warmup)
    rows = [{"variant": v, "batch": batch_label(v, args.clips), **timed[v]} for v in STEP_VARIANTS]
    return {**with_ratios(rows), "paired_ratio": paired(timed, "#5 MAM", "#1 plain")}


def batch_label(variant: str, clips: int) -> str:
    """Videos per step as the variant splits them: ``4`` or ``2 + 2`` (originals + augmented copies)."""
    return str(clips) if variant.startswith("#1") else f"{clips // 2} + {clips // 2}"


def with_ratios(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows (plain first) with each median's ratio to plain's; the MAM ratio against the target."""
    for row in rows:
        row["ratio_to_plain"] = round(row["median_s"] / rows[0]["median_s"], 3)
    mam = next(r["ratio_to_plain"] for r in rows if r["variant"] == "#5 MAM")
    return {"rows": rows, "target": TRAIN_TARGET, "mam_ratio": mam, "within_target": mam <= TRAIN_TARGET}


def train_one(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    """``train()`` one variant in this process; its step times, peak RSS and the load meanwhile."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    batch = args.clips if variant.startswith("#1") else args.clips // 2
    with tempfile.TemporaryDirectory() as tmp:
        config = wan_config(args, source=str(Path(tmp) / "flashctl.toml"),
                            train={**VARIANTS[variant], "batch_size": batch, "lr": 1e-4},
                            animate={"steps": 1, "scheduler": "euler", "formats": ["gif"]})
        steps = timed_train(config, _clips(args.clips, args.frames, args.size), args.steps, args.warmup)
    return {"variant": variant, "step_s": steps,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "load1": round(os.getloadavg()[0], 2)}


def train_runs(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`train_one` of every variant in fresh processes, ``--repeat`` rounds, alternating."""
    child = [sys.executable, __file__, *sys.argv[1:]]
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for _ in range(args.repeat):
        for variant in VARIANTS:
            out = subprocess.run([*child, "--one", variant], capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{variant} run failed:\n{out.stderr[-2000:]}")
            runs[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return with_ratios([{"variant": v, "batch": batch_label(v, args.clips),
                         **spread([s for r in rs for s in r["step_s"]]),
                         "peak_rss_mb": max(r["peak_rss_mb"] for r in rs), "load1": [r["load1"] for r in rs]}
                        for v, rs in runs.items()])


# -- part 2: render ----------------------------------------------------------------------------------------


def animator(host: Any, args: argparse.Namespace, **animate: Any) -> Any:
    """A flashctl Animator on the bench's wan model as ``load_animator`` leaves it; ``animate`` = overrides."""
    from flashctl.context import BuildContext
    from flashctl.model.motion_model import MotionModel
    from flashctl.pipeline.animate import Animator

    config = wan_config(args, animate={"steps": args.render_steps, "scheduler": "euler", **animate})
    model = MotionModel.build(config, host, BuildContext())
    prompt_emb = model.backbone.encode_prompt([PROMPT])  # (1, seq, dim)
    guided = config.animate.guidance_scale > 1
    negative = model.backbone.encode_prompt([config.animate.negative_prompt]) if guided else None  # (1, seq, dim)
    weights = {"frames": args.frames, "size": args.size, "fps": 8.0}
    return Animator(model, "bench", weights, config.animate, prompt_emb, negative)


def stock_pipeline(backbone: Any, transformer: Any) -> Any:
    """diffusers' WanImageToVideoPipeline on the backbone's modules, Wan2.2-TI2V style (``expand_timesteps``)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline

    pipe = WanImageToVideoPipeline(
        tokenizer=backbone.tokenizer, text_encoder=backbone.text_encoder, vae=backbone.vae, transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(**backbone.objective.scheduler_config), expand_timesteps=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def bench_render(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from diffusers.models.transformers.transformer_wan import WanAttnProcessor
    from PIL import Image

    from flashctl.plugins import build_host

    if args.threads:
        torch.set_num_threads(args.threads)
    host = build_host()
    ours = animator(host, args, guidance_scale=1.0, anchor=False, start="noise")  # the stock call's work
    users = animator(host, args)  # animate's defaults
    backbone = ours.model.backbone
    stock_transformer = copy.deepcopy(backbone.unet)
    stock_transformer.set_attn_processor(WanAttnProcessor())
    pipes = {"stock": stock_pipeline(backbone, stock_transformer), "stock_flashctl_attn": stock_pipeline(backbone,
                                                                                                       backbone.unet)}
    image = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    latent_frames = backbone.latent_frames(args.frames)
    side = args.size // int(backbone.vae.config.scale_factor_spatial)
    noise = torch.randn(1, latent_frames, backbone.vae.config.z_dim, side, side,
                        generator=torch.Generator().manual_seed(0))  # (1, F', c, h, w): flashctl's draw for seed 0

    def stock(pipe: Any) -> Callable[[], np.ndarray]:
        def call() -> np.ndarray:
            frames = pipe(image=Image.fromarray(image), prompt_embeds=ours.prompt_emb, height=args.size,
                          width=args.size, num_frames=args.frames, num_inference_steps=args.render_steps,
                          guidance_scale=1.0, latents=noise.permute(0, 2, 1, 3, 4), output_type="np").frames
            return (frames[0] * 255).round().astype(np.uint8)  # (F, S, S, 3), as flashctl writes them
        return call

    with torch.no_grad():
        timed, videos = alternate({"flashctl": lambda: ours.render(image, seed=0),
                                   **{k: stock(p) for k, p in pipes.items()}}, args.repeat)
        default = alternate({"users_default": lambda: users.render(image, seed=0)}, args.repeat)[0]["users_default"]
    same = {k: int(np.abs(videos["flashctl"].astype(int) - videos[k].astype(int)).max()) for k in pipes}
    base = timed["stock"]["median_s"]
    return {**timed, "users_default": {**default, "ratio_to_stock": round(default["median_s"] / base, 3),
                                       "animate": users.settings.model_dump(include={"guidance_scale", "anchor",
                                                                                     "start", "scheduler"}),
                                       "decoder": users.model.decoder.name},
            "ratio": round(timed["flashctl"]["median_s"] / base, 3), "paired_ratio": paired(timed, "flashctl", "stock"),
            "ratio_to_stock_flashctl_attn": round(timed["flashctl"]["median_s"]
                                                  / timed["stock_flashctl_attn"]["median_s"], 3),
            "max_uint8_diff_to_flashctl": same, "target": RENDER_TARGET}


PARTS = {"step": step_loop, "train": train_runs, "render": bench_render}


# -- report ------------------------------------------------------------------------------------------------


def describe(ratio: dict[str, float]) -> str:
    return f"median {ratio['median']:.3f} (min {ratio['min']:.3f}, max {ratio['max']:.3f})"


def print_report(result: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"wan tiny preset at {args.layers} blocks x width {args.heads}x{args.head_dim}, ffn {args.ffn_dim}; "
          f"{args.frames} frames of {args.size} px; torch threads {result['torch_threads']}; "
          f"load1 = 1-min load average (cores: {os.cpu_count()})")
    row = "{:<44} {:>9} {:>7} {:>7} {:>6} {:>6}  {}"
    for part, title in (("step", f"optimizer step on pre-encoded latents (augment bank), {args.steps} steps each, "
                                 "alternating"),
                        ("train", f"train() end to end, augment_bank 0 (copies VAE-encoded in the step), "
                                  f"{args.repeat} runs x {args.steps} steps per variant")):
        if part not in result:
            continue
        t = result[part]
        print(f"\n{title}; {args.clips} videos per step (target #5/#1 <= {t['target']})")
        print(row.format("variant (videos per step)", "median_s", "min_s", "max_s", "ratio", "rss_mb",
                         "load1" + (" per run" if part == "train" else " per round")))
        for r in t["rows"]:
            print(row.format(f"{r['variant']} ({r['batch']})", f"{r['median_s']:.3f}", f"{r['min_s']:.3f}",
                             f"{r['max_s']:.3f}", f"{r['ratio_to_plain']:.3f}", f"{r.get('peak_rss_mb', '')}",
                             " ".join(map(str, r["load1"]))))
        if "paired_ratio" in t:
            print(f"#5 / #1 per round: {describe(t['paired_ratio'])}")
    if "render" in result:
        p = result["render"]
        print(f"\nrender, {args.render_steps} Euler steps, {args.repeat} alternating calls each "
              f"(target flashctl/stock <= {p['target']})")
        print(row.format("measure", "median_s", "min_s", "max_s", "ratio", "", "load1 per round"))
        labels = {"flashctl": "flashctl Animator.render, guidance 1",
                  "stock": "stock WanImageToVideoPipeline (stock attn)",
                  "stock_flashctl_attn": "stock pipeline, flashctl's attn1 processor",
                  "users_default": "animate defaults (g 4, anchor, ref start)"}
        ratios = {"flashctl": p["ratio"], "stock": 1.0, "stock_flashctl_attn": None,
                  "users_default": p["users_default"]["ratio_to_stock"]}
        for key, label in labels.items():
            r = p[key]
            ratio = "" if ratios[key] is None else f"{ratios[key]:.3f}"
            print(row.format(label, f"{r['median_s']:.3f}", f"{r['min_s']:.3f}", f"{r['max_s']:.3f}", ratio, "",
                             " ".join(map(str, r["load1"]))))
        print(f"flashctl / stock per round: {describe(p['paired_ratio'])}")
        print(f"flashctl / stock pipeline with flashctl's attn1: {p['ratio_to_stock_flashctl_attn']:.3f}; "
              f"same video (max uint8 difference to flashctl's frames): {p['max_uint8_diff_to_flashctl']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", nargs="+", choices=PARTS, default=list(PARTS), help="which parts to run")
    parser.add_argument("--clips", type=int, default=4, help="videos per step (even): plain batch; MAM half + half")
    parser.add_argument("--frames", type=int, default=17, help="video frames, 4k+1")
    parser.add_argument("--size", type=int, default=64, help="pixels, a multiple of 16 (the stock pipeline's rule)")
    parser.add_argument("--steps", type=int, default=6, help="timed training steps per variant (step) or run (train)")
    parser.add_argument("--warmup", type=int, default=1, help="training steps dropped per variant or run")
    parser.add_argument("--repeat", type=int, default=3, help="train() runs per variant; render calls per variant")
    parser.add_argument("--render-steps", type=int, default=20, help="denoising steps (animate's default: 20)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads; 0 = torch's default")
    parser.add_argument("--layers", type=int, default=4, help="transformer blocks")
    parser.add_argument("--heads", type=int, default=4, help="attention heads")
    parser.add_argument("--head-dim", type=int, default=32, help="width of a head")
    parser.add_argument("--ffn-dim", type=int, default=512, help="feed-forward width")
    parser.add_argument("--out", type=Path, default=RESULTS / "wan.json")
    parser.add_argument("--one", choices=list(VARIANTS), help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if args.one:
        print(json.dumps(train_one(args.one, args)))
        return
    if args.clips % 2:
        parser.error("--clips must be even (MAM pairs B originals with B augmented copies)")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    result: dict[str, Any] = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                                       if k != "one"},
                              "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                              "torch": torch.__version__}
    for part in args.part:
        result[part] = PARTS[part](args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_report(result, args)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
