"""Why the Motion Alignment Module (MAM) costs: the augmented term's gradient against the original's.

Run: ``nice -n 10 .venv/bin/python experiments/mam_gradients.py --project PROJECT [--clips 2] [--draws 12]
[--threads 1] [--seed 0] [--out experiments/results/mam_gradients.json]``

``PROJECT`` holds ``flashctl.toml`` and ``clips/train/*.mp4`` (e.g. an ablation project,
``bench/results/dg0-narrow-bow/projects/bow``). Its first ``--clips`` training clips are x; x~ are strong
re-colourings of them (even clips inverted, odd ones hue-rotated by 90-180 degrees). A fresh motion LoRA (A seeded by
``--seed``) with a small random B (B = 0 would hide the donor path's effect on LoRA A) is the trainable part. Printed:

* (a) L(x) from the paired ``[x; x~]`` batch with MAM active vs inert: max |difference| (must be 0).
* (b) per ablation row, mean over ``--draws`` noise/timestep draws: cos(g_x, g_x~) and |g_x~|/|g_x| for the
  gradients of mean L(x) and mean L(x~) w.r.t. the LoRA, and the two losses. Rows #2 (copies, no alignment),
  #3 (motion alignment), #4 (correspondence), #5 (both), #3 with ``donor_grad = false``, and #3 / #5 with
  ``reference_frame = "keep"`` (frame 0, the clean reference, stays the copy's own).
* (c) per temporal ``attn1``: how much the motion swap changes the copy's input at frame 0 vs frames 1..
  (|fed - own| / |own|), and how far the clean frame 0 lies from the noised frames' mean in units of their spread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

import torch

ROWS = {  # row -> MamSection fields (None: no MAM, the augmented copies as plain extra examples)
    "#2 copies, no alignment": None,
    "#3 motion": {"motion_align": True},
    "#4 correspondence": {"correspondence_align": True},
    "#5 both": {"motion_align": True, "correspondence_align": True},
    "#3 motion, donor_grad off": {"motion_align": True, "donor_grad": False},
    "#3 motion, reference kept": {"motion_align": True, "reference_frame": "keep"},
    "#5 both, reference kept": {"motion_align": True, "correspondence_align": True, "reference_frame": "keep"},
}


def load_pair(project: Path, clips: int, backbone) -> tuple[torch.Tensor, torch.Tensor]:
    """The project's first ``clips`` training clips and their re-coloured copies -> latents x, x~ (B, F, c, h, w)."""
    from flashctl.config import load_config
    from flashctl.pipeline.prepare import normalise_clips
    from flashctl.progress import NullReporter
    from flashctl.video import frames_to_tensor
    from flashctl_augment import transforms

    files = sorted((project / "clips" / "train").glob("*.mp4"))[:clips]
    if not files:
        raise SystemExit(f"--project {project}: no clips/train/*.mp4 there; pass an ablation project folder")
    config = load_config(project / "flashctl.toml")
    frames = normalise_clips(files, config, [], NullReporter())  # (B, F, S, S, 3) uint8
    videos = torch.stack([frames_to_tensor(v) for v in frames])  # (B, F, 3, S, S)
    gen = torch.Generator().manual_seed(0)
    copies = torch.stack([transforms.invert(v, gen) if i % 2 == 0
                          else transforms.hue_rotate(v, gen, min_degrees=90, max_degrees=180)
                          for i, v in enumerate(videos)])  # (B, F, 3, S, S)
    with torch.no_grad():
        return backbone.encode_video(videos), backbone.encode_video(copies)  # (B, F, c, h, w) each


def fresh_lora(backbone, rank: int, alpha: float, seed: int) -> list[torch.nn.Parameter]:
    """A motion LoRA on the backbone's targets, the same for the same ``seed``: A seeded (peft draws it from the
    global generator), B small and random from ``seed + 1`` (B = 0 would hide the donor path's effect on A)."""
    from flashctl.model.lora import add_motion_lora

    torch.manual_seed(seed)
    params = add_motion_lora(backbone, rank, alpha)
    randomise_lora_b(backbone.unet, seed + 1)
    return params


def randomise_lora_b(unet: torch.nn.Module, seed: int, std: float = 0.02) -> None:
    """Give every LoRA B a small random value, so gradients reach LoRA A through it."""
    torch.manual_seed(seed)
    for name, p in unet.named_parameters():
        if ".lora_B." in name:
            p.data.normal_(0, std)


def draw(objective, latents: torch.Tensor, seed: int, timestep: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The objective's noise ``(B, F, c, h, w)`` and timesteps ``(B,)`` for ``seed`` (all ``timestep`` if given)."""
    noise, timesteps = objective.draw(latents, torch.Generator().manual_seed(seed))
    return noise, timesteps if timestep is None else torch.full_like(timesteps, timestep)


def original_half_difference(backbone, x: torch.Tensor, x_aug: torch.Tensor, prompt: torch.Tensor,
                             noise: torch.Tensor, timesteps: torch.Tensor) -> float:
    """Max |L(x) difference| between the paired batch ``[x; x~]`` with the installed MAM processors active and
    the same batch with them inert (the stock layers): 0 when MAM leaves the original half untouched."""
    from flashctl.model import flash

    objective, b = backbone.objective, x.shape[0]
    with torch.no_grad():
        on, _ = flash.paired_denoising_loss(backbone, objective, x, x_aug, noise, timesteps, prompt)  # (B,)
        off = flash.denoising_loss(backbone, objective, torch.cat([x, x_aug]), noise.repeat(2, 1, 1, 1, 1),
                                   timesteps.repeat(2), prompt.expand(b, -1, -1).repeat(2, 1, 1))[:b]  # (B,)
    return float((on - off).abs().max())


def term_gradients(backbone, params: list[torch.nn.Parameter], x: torch.Tensor, x_aug: torch.Tensor,
                   prompt: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> dict[str, float]:
    """One paired forward under the installed MAM processors -> cos(g_x, g_x~), |g_x~|/|g_x|, L(x), L(x~)
    (g: gradient of the mean loss w.r.t. ``params``, flattened)."""
    from flashctl.model import flash

    loss, loss_aug = flash.paired_denoising_loss(backbone, backbone.objective, x, x_aug, noise, timesteps, prompt)
    g = _flat_grad(loss.mean(), params, retain=True)  # (P,)
    g_aug = _flat_grad(loss_aug.mean(), params, retain=False)  # (P,)
    return {"cos": float(torch.nn.functional.cosine_similarity(g, g_aug, dim=0)),
            "ratio": float(g_aug.norm() / g.norm()), "loss": float(loss.detach().mean()),
            "loss_aug": float(loss_aug.detach().mean())}


def _flat_grad(loss: torch.Tensor, params: list[torch.nn.Parameter], retain: bool) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, retain_graph=retain, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for p, g in zip(params, grads)])  # (P,)


def row_gradients(backbone, params, x, x_aug, prompt, options: dict | None, seeds: list[int]) -> dict:
    """:func:`term_gradients` averaged over one draw per seed, with the row's MAM installed (``None``: none)."""
    from flashctl.config import MamSection
    from flashctl.model.motion_alignment import install_mam, uninstall_mam

    if options is not None:
        install_mam(backbone, MamSection(**options))
    try:
        draws = [term_gradients(backbone, params, x, x_aug, prompt, *draw(backbone.objective, x, s)) for s in seeds]
    finally:
        uninstall_mam(backbone.unet)
    mean = {k: statistics.fmean(d[k] for d in draws) for k in draws[0]}
    return mean | {"cos_per_draw": [d["cos"] for d in draws]}


def frame0_figures(backbone, x: torch.Tensor, x_aug: torch.Tensor, prompt: torch.Tensor, noise: torch.Tensor,
                   timesteps: torch.Tensor) -> dict[str, dict[str, float]]:
    """Per temporal ``attn1`` under motion alignment (reference aligned): |fed - own| / |own| of the copy's input
    at frame 0 and frames 1.., and |h0 - mean(h1..)| over the rms spread of frames 1.. about their mean."""
    from flashctl.config import MamSection
    from flashctl.model import flash
    from flashctl.model.motion_alignment import install_mam, uninstall_mam

    install_mam(backbone, MamSection(motion_align=True))
    names = [n for n in backbone.temporal_attention if n.endswith("attn1.processor")]
    seen: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(module, args, kwargs):
            seen[name] = (args[0] if args else kwargs["hidden_states"]).detach()  # (2N, F, C)
        return hook

    layers = [backbone.unet.get_submodule(n.removesuffix(".processor")) for n in names]
    hooks = [layer.register_forward_pre_hook(keep(n), with_kwargs=True) for layer, n in zip(layers, names)]
    try:
        with torch.no_grad():
            flash.paired_denoising_loss(backbone, backbone.objective, x, x_aug, noise, timesteps, prompt)
    finally:
        for hook in hooks:
            hook.remove()
        uninstall_mam(backbone.unet)
    out = {}
    for name in names:
        h, h_aug = seen[name].chunk(2)  # (N, F, C) each: what enters the layer, before the swap
        fed = h_aug.mean(1, keepdim=True) + h - h.mean(1, keepdim=True)  # s~ + m: (N, F, C)
        change = (fed - h_aug).norm(dim=(0, 2)) / h_aug.norm(dim=(0, 2))  # (F,)
        rest = h[:, 1:].mean(1, keepdim=True)  # (N, 1, C)
        spread = (h[:, 1:] - rest).norm() / (h.shape[1] - 1) ** 0.5
        out[name.split(".transformer")[0]] = {"change_frame0": float(change[0]),
                                              "change_frames1": float(change[1:].mean()),
                                              "frame0_offset": float((h[:, :1] - rest).norm() / spread)}
    return out


def print_report(identity: dict[str, float], rows: dict[str, dict], frame0: dict[str, dict[str, float]]) -> None:
    for name, diff in identity.items():
        print(f"(a) {name}: max |L(x) with MAM active - inert| in the paired batch = {diff:.2e}")
    print("\n| row | cos(g_x, g_x~) | \\|g_x~\\|/\\|g_x\\| | L(x) | L(x~) |")
    print("|---|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['cos']:+.3f} | {r['ratio']:.2f} | {r['loss']:.4f} | {r['loss_aug']:.4f} |")
    print("\n| layer (attn1) | \\|fed-own\\|/\\|own\\| frame 0 | frames 1.. | \\|h0-mean(h1..)\\| / rms spread |")
    print("|---|---:|---:|---:|")
    for name, f in frame0.items():
        print(f"| {name} | {f['change_frame0']:.2f} | {f['change_frames1']:.2f} | {f['frame0_offset']:.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--project", type=Path, required=True, help="folder with flashctl.toml and clips/train/*.mp4")
    p.add_argument("--clips", type=int, default=2, help="training clips in the batch")
    p.add_argument("--draws", type=int, default=12, help="noise/timestep draws per row")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="seeds the LoRA's A (and, +1, its random B)")
    p.add_argument("--prompt", default="a person bows", help="the action prompt")
    p.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

    from flashctl.config import MamSection, load_config
    from flashctl.context import context_for
    from flashctl.model.motion_alignment import install_mam, uninstall_mam
    from flashctl.model.motion_model import MotionModel
    from flashctl.plugins import host_for
    from flashctl.progress import NullReporter

    config = load_config(args.project / "flashctl.toml")
    host = host_for(config)
    backbone = MotionModel.build(config, host, context_for(config, host, NullReporter()), training=True).backbone
    x, x_aug = load_pair(args.project, args.clips, backbone)  # (B, F, c, h, w) each
    prompt = backbone.encode_prompt([args.prompt])  # (1, seq, dim)
    params = fresh_lora(backbone, config.train.lora_rank, config.train.lora_alpha, args.seed)
    backbone.unet.train()

    fixed = draw(backbone.objective, x, 3, timestep=500)
    identity = {}
    for name in ("#3 motion", "#4 correspondence", "#5 both"):
        install_mam(backbone, MamSection(**ROWS[name]))
        identity[name] = original_half_difference(backbone, x, x_aug, prompt, *fixed)
        uninstall_mam(backbone.unet)
    seeds = list(range(10, 10 + args.draws))
    rows = {}
    for name, options in ROWS.items():
        rows[name] = row_gradients(backbone, params, x, x_aug, prompt, options, seeds)
        print(f"  {name}: cos {rows[name]['cos']:+.3f}", flush=True)
    frame0 = frame0_figures(backbone, x, x_aug, prompt, *fixed)
    print_report(identity, rows, frame0)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "identity": identity,
                                        "rows": rows, "frame0": frame0}, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
