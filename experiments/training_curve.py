"""The training curve of one motion: pose and motion metrics on held-out people every N training steps.

One action's training clips and held-out clips come straight from the synthetic world (the ablation's
seeds: training people from seed 0 of the train pool, held-out people from seed 100 of the held-out pool),
the model and its loss from :class:`flashctl.model.motion_model.MotionModel` under the project config
(``flashctl.toml``: the project recipe, animate's sampler and anchoring). Step 0 is the base alone (the
new LoRA is zero). At every ``--every`` steps each held-out person's first frame is animated and scored
against their real clip with ``keypoints`` (joint displacement correlation) and ``motion-track``.

Run:   .venv/bin/python experiments/training_curve.py --action bow --steps 600 --every 100 --canonical
Writes experiments/results/curve-ACTION.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
METRICS = {"keypoints": "correlation", "motion-track": "correlation"}


def clips(action: str, n: int, seed: int, split: str, canonical: bool, people: int | None) -> torch.Tensor:
    """``(n, F, 3, 64, 64)`` in [-1, 1]; ``people``: only that many people, as the ablation's narrow sets."""
    from flashctl_synth.keypoint_net import to_tensor
    from flashctl_synth.render import render_clip

    return torch.stack([to_tensor(render_clip(action, seed=seed + (i % people if people else i), motion_seed=seed + i,
                                              split=split, canonical=canonical)[0]) for i in range(n)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--action", default="bow")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--heldout", type=int, default=6)
    p.add_argument("--people", type=int, default=None, help="a narrow training set of this many people")
    p.add_argument("--canonical", action="store_true")
    p.add_argument("--animate-steps", type=int, default=None, help="denoising steps (default: the config's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", type=Path, default=REPO / "flashctl.toml")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(1)

    from flashctl.config import load_config
    from flashctl.context import context_for
    from flashctl.model.motion_model import MotionModel
    from flashctl.plugins import host_for
    from flashctl_synth.actions import ACTIONS

    config = load_config(args.config)
    settings = config.animate if args.animate_steps is None else config.animate.model_copy(
        update={"steps": args.animate_steps})
    host = host_for(config)
    metrics = {name: host.registry.create("metric", name, config.component_options("metric", name))
               for name in METRICS}
    model = MotionModel.build(config, host, context_for(config, host), training=True)
    params = model.add_motion(config.train.lora_rank, config.train.lora_alpha, config.train.lora_extra_targets)
    train = clips(args.action, args.clips, 0, "train", args.canonical, args.people)  # (N, F, 3, S, S)
    heldout = clips(args.action, args.heldout, 100, "heldout", args.canonical, None)  # (H, F, 3, S, S)
    backbone = model.backbone
    latents = torch.cat([backbone.encode_video(c[None]) for c in train])  # (N, F, c, h, w)
    prompt = backbone.encode_prompt([ACTIONS[args.action].prompt])  # (1, seq, dim)
    negative = backbone.encode_prompt([settings.negative_prompt]) if settings.guidance_scale > 1 else None
    optimizer = torch.optim.AdamW(params, lr=config.train.lr)
    generator = torch.Generator().manual_seed(args.seed)

    def score(step: int) -> dict:
        backbone.unet.eval()
        found: dict[str, list[float]] = {name: [] for name in METRICS}
        for i, real in enumerate(heldout):
            video = model.sample(real[None, 0], prompt, real.shape[0], settings, negative,
                                 torch.Generator().manual_seed(args.seed + i))[0].float()  # (F, 3, S, S)
            for name, key in METRICS.items():
                found[name].append(metrics[name](video, reference=real[0], target=real)[key])
        backbone.unet.train()
        row = {"step": step, **{f"{n}/{METRICS[n]}": statistics.fmean(v) for n, v in found.items()},
               **{f"{n}/{METRICS[n]}_std": statistics.stdev(v) for n, v in found.items()}}
        print(f"| {step} | " + " | ".join(f"{row[f'{n}/{k}']:.3f} ± {row[f'{n}/{k}_std']:.3f}"
                                          for n, k in METRICS.items()) + f" | {time.perf_counter() - t0:.0f} |",
              flush=True)
        return row

    print("| step | " + " | ".join(f"{n}/{k} ↑" for n, k in METRICS.items()) + " | s |")
    print("|---:|" + "---:|" * (len(METRICS) + 1))
    t0 = time.perf_counter()
    curve = [score(0)]
    losses = []
    backbone.unet.train()
    for step in range(1, args.steps + 1):
        idx = torch.randint(len(latents), (config.train.batch_size,), generator=generator)
        loss = model.training_loss(latents[idx], prompt, generator)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        if step % args.every == 0:
            curve.append({**score(step), "train_loss": statistics.fmean(losses[-args.every:])})
    out = args.out or REPO / "experiments" / "results" / f"curve-{args.action}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "curve": curve}, indent=2) + "\n")


if __name__ == "__main__":
    main()
