"""Animate cost on the tiny preset: flashctl vs stock diffusers, DED vs VAE decode, frames and resolution sweeps.

* flashctl end to end after load (``Animator.render``: uint8 image in, uint8 frames out) vs the stock
  ``diffusers.AnimateDiffPipeline`` built from the SAME modules doing the same work (U-Net with flashctl's
  cross-frame processors, VAE, scheduler config, steps, seed, precomputed prompt embedding, no guidance,
  no anchoring, pure-noise start). Target ratio <= 1.05. The two are timed alternately.
* what users run: ``animate``'s defaults (guidance 4, anchoring, reference start, the default decoder),
  as a row beside the stock unguided call (guidance doubles the denoiser batch).
* DED (``detail-enhance``, unfitted) decode vs the stock VAE decode of the same latents, sliced vs sliced
  and batched vs batched (``runtime.vae_slicing``), timed alternately. Target <= 1.30.
* flashctl render time vs frames (8, 16, 32) at 64 px and vs resolution (32, 64, 128) at 16 frames.
* peak RSS of the process. Each timing is the minimum over ``--repeat`` runs, with the 1-minute
  load average beside it (the machine may be shared: compare figures only at low load).

Run: .venv/bin/python bench/animate.py [--threads 1] [--repeat 3] [--steps 20]
Writes bench/results/animate.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from flashctl.model.cross_frame import set_num_frames

RESULTS = Path(__file__).parent / "results"
PROMPT = "a person waves"


def timed_pair(a: Callable[[], Any], b: Callable[[], Any], repeat: int) -> tuple[dict[str, float], dict[str, float]]:
    """:func:`timed` of ``a`` and ``b`` measured alternately (a, b, a, b, ...), so a load change hits both."""
    a(), b()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for fn, out in ((a, times[0]), (b, times[1])):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    load = round(os.getloadavg()[0], 2)
    return {"s": round(min(times[0]), 4), "load1": load}, {"s": round(min(times[1]), 4), "load1": load}


def timed(fn: Callable[[], Any], repeat: int) -> dict[str, float]:
    """Minimum seconds over ``repeat`` calls (after one warm-up) and the load average meanwhile."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"s": round(min(times), 4), "load1": round(os.getloadavg()[0], 2)}


SAME_WORK = {"guidance_scale": 1.0, "anchor": False, "start": "noise"}  # what the stock pipeline call does


def animator(host: Any, decoder_name: str | None, frames: int, size: int, steps: int, **animate: Any) -> Any:
    """A flashctl Animator on the tiny preset, as ``load_animator`` leaves it (runtime defaults applied);
    ``decoder_name`` None = the default decoder, ``animate`` = [animate] overrides."""
    from flashctl.config import FlashConfig
    from flashctl.context import BuildContext
    from flashctl.pipeline.animate import Animator
    from flashctl.model.motion_model import MotionModel

    model_section = {"decoder": decoder_name} if decoder_name else {}
    config = FlashConfig.model_validate({"model": model_section, "animate": {"steps": steps, **animate}})
    model = MotionModel.build(config, host, BuildContext())
    prompt_emb = model.backbone.encode_prompt([PROMPT])  # (1, seq, dim)
    guided = config.animate.guidance_scale > 1
    negative = model.backbone.encode_prompt([config.animate.negative_prompt]) if guided else None  # (1, seq, dim)
    return Animator(model, "bench", {"frames": frames, "size": size, "fps": 8.0}, config.animate, prompt_emb, negative)


def stock_pipeline(backbone: Any) -> Any:
    """diffusers' AnimateDiffPipeline around the same modules; the MotionAdapter is already inside the U-Net."""
    from diffusers import AnimateDiffPipeline, DDIMScheduler

    pipe = AnimateDiffPipeline(vae=backbone.vae, text_encoder=backbone.text_encoder, tokenizer=backbone.tokenizer,
                               unet=backbone.unet, motion_adapter=None,
                               scheduler=DDIMScheduler.from_config(backbone.objective.scheduler_config))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def compare_pipelines(host: Any, frames: int, size: int, steps: int, repeat: int) -> dict[str, Any]:
    anim = animator(host, "vae", frames, size, steps, **SAME_WORK)
    users = animator(host, None, frames, size, steps)  # animate's defaults
    backbone = anim.model.backbone
    pipe = stock_pipeline(backbone)
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)

    def stock() -> Any:
        set_num_frames(backbone.unet, frames)  # the cross-frame processors need the frame count, as denoise sets it
        return pipe(prompt_embeds=anim.prompt_emb, num_frames=frames, height=size, width=size,
                    num_inference_steps=steps, guidance_scale=1.0, generator=torch.Generator().manual_seed(0),
                    output_type="np").frames

    ours, theirs = timed_pair(lambda: anim.render(image, seed=0), stock, repeat)
    default = timed(lambda: users.render(image, seed=0), repeat)
    return {"flashctl": ours, "stock": theirs, "ratio": round(ours["s"] / theirs["s"], 3), "target": 1.05,
            "users_default": {**default, "ratio_to_stock": round(default["s"] / theirs["s"], 3),
                              "animate": users.settings.model_dump(include={"guidance_scale", "anchor", "start"}),
                              "decoder": users.model.decoder.name},
            "frames": frames, "size": size, "steps": steps}


def compare_decoders(host: Any, frames: int, size: int, repeat: int) -> dict[str, Any] | None:
    if "detail-enhance" not in host.registry.names("decoder"):
        return None
    ded = animator(host, "detail-enhance", frames, size, 1)
    backbone = ded.model.backbone
    g = torch.Generator().manual_seed(0)
    reference = torch.rand(1, 3, size, size, generator=g) * 2 - 1  # (1, 3, S, S)
    latents = backbone.encode_video(reference[:, None]).expand(1, frames, -1, -1, -1).contiguous()  # (1, F, c, h, w)
    result: dict[str, Any] = {"target": 1.30, "frames": frames, "size": size}
    for mode, slicing in (("sliced", True), ("batched", False)):  # like against like (runtime.vae_slicing)
        backbone.vae.enable_slicing() if slicing else backbone.vae.disable_slicing()
        with torch.no_grad():
            ours, stock = timed_pair(lambda: ded.model.decoder.decode(latents, reference),
                                     lambda: backbone.decode_latents(latents), repeat)
        result[mode] = {"ded": ours, "vae": stock, "ratio": round(ours["s"] / stock["s"], 3)}
    return result


def sweep(host: Any, points: list[tuple[int, int]], steps: int) -> list[dict[str, Any]]:
    rows = []
    image_rng = np.random.default_rng(0)
    for frames, size in points:
        anim = animator(host, "vae", frames, size, steps, **SAME_WORK)
        image = image_rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        rows.append({"frames": frames, "size": size, **timed(lambda: anim.render(image, seed=0), 1)})
    return rows


def main(argv: list[str] | None = None) -> int:
    from flashctl.plugins import build_host

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: steadier on a shared box)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=RESULTS / "animate.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    host = build_host()
    result = {
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
        "pipeline": compare_pipelines(host, args.frames, args.size, args.steps, args.repeat),
        "decoder": compare_decoders(host, args.frames, args.size, args.repeat),
        "vs_frames": sweep(host, [(8, 64), (16, 64), (32, 64)], args.steps),
        "vs_size": sweep(host, [(16, 32), (16, 64), (16, 128)], args.steps),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    p, d = result["pipeline"], result["decoder"]
    print(f"torch threads {result['torch_threads']}; seconds are the min of {args.repeat}; load1 = 1-min load average")
    print(f"{'measure':<38} {'seconds':>9} {'load1':>6} {'ratio':>6} {'target':>6}")
    print(f"{'flashctl render ' + str(p['frames']) + 'f ' + str(p['size']) + 'px ' + str(p['steps']) + ' steps':<38} "
          f"{p['flashctl']['s']:>9.3f} {p['flashctl']['load1']:>6.2f} {p['ratio']:>6.3f} {p['target']:>6.2f}")
    print(f"{'stock AnimateDiffPipeline, same modules':<38} {p['stock']['s']:>9.3f} {p['stock']['load1']:>6.2f}")
    u = p["users_default"]
    print(f"{'animate defaults (' + u['decoder'] + ', g ' + str(u['animate']['guidance_scale']) + ')':<38} "
          f"{u['s']:>9.3f} {u['load1']:>6.2f} {u['ratio_to_stock']:>6.3f}")
    for mode in ("sliced", "batched") if d is not None else ():
        m = d[mode]
        print(f"{'DED decode (unfitted), ' + mode:<38} {m['ded']['s']:>9.3f} {m['ded']['load1']:>6.2f} "
              f"{m['ratio']:>6.3f} {d['target']:>6.2f}")
        print(f"{'stock VAE decode, ' + mode:<38} {m['vae']['s']:>9.3f} {m['vae']['load1']:>6.2f}")
    for row in result["vs_frames"] + result["vs_size"]:
        label = f"render {row['frames']}f {row['size']}px"
        print(f"{label:<38} {row['s']:>9.3f} {row['load1']:>6.2f}")
    print(f"peak RSS {result['peak_rss_gb']} GB; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
