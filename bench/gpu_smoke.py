"""GPU smoke benchmark: what ``flashctl train`` and ``flashctl animate`` use at 512x512x16, random full-size weights.

Training is measured by ``bench/memory.py``'s point: ``flashctl.pipeline.train.train`` itself on the
SD1.5-size AnimateDiff saved in the hub layout (paired MAM batch, 2 LoRA steps, the detail-decoder fit, the
preview), with the real-preset defaults (bf16 autocast, frozen weights in bf16, checkpointing through the
motion modules, augmented copies encoded once), reporting ``torch.cuda.max_memory_allocated`` per phase
(target: the LoRA step and the decoder fit under 20 GB). Animation: 25-step DDIM renders through
``flash.sample`` with the inference ``[runtime]`` (bfloat16, sliced VAE), seconds and peak memory.

Run on a CUDA machine:    .venv/bin/python bench/gpu_smoke.py            (writes bench/results/gpu_smoke.json)
Dry run anywhere (tiny):  .venv/bin/python bench/gpu_smoke.py --cpu-tiny  (same code, tiny presets, on the CPU)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
import memory  # noqa: E402  (bench/memory.py: the training measurement)

TARGET_GB = 20.0


def animate(folder: Path | None, size: int, frames: int, steps: int, device: str) -> dict[str, Any]:
    """Renders of a random reference with the backbone built from ``folder`` as ``flashctl animate`` builds it."""
    from flashctl.config import RuntimeSection
    from flashctl.context import BuildContext
    from flashctl.model.flash import sample
    from flashctl.model.runtime import apply_runtime
    from flashctl.plugins import build_host
    from flashctl_decoders.vae import VaeDecoder

    backbone = build_host().registry.create("backbone", "animatediff", memory.backbone_options("animatediff", folder),
                                            BuildContext(device=device))
    runtime = RuntimeSection(device=device, dtype="bfloat16" if device.startswith("cuda") else "float32")
    apply_runtime(backbone, runtime)
    decoder = VaeDecoder()
    decoder.attach(backbone)
    reference = (torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1).to(device)
    prompt = backbone.encode_prompt(["a person waves"])  # (1, seq, dim)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(2):
        t0 = time.perf_counter()
        video = sample(backbone, decoder, reference, prompt, frames, steps, backbone.objective.sampler("ddim"),
                       generator=torch.Generator().manual_seed(i))  # (1, F, 3, S, S)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    assert video.shape == (1, frames, 3, size, size) and torch.isfinite(video).all()
    return {"s_per_animation": round(min(times), 3), "steps": steps,
            "peak_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-tiny", action="store_true", help="dry run: the same code on the tiny presets, CPU")
    parser.add_argument("--folder", type=Path, help="random full-size weights saved here, built if missing (kept)")
    parser.add_argument("--out", type=Path, help="JSON output (default bench/results/gpu_smoke[_cpu_tiny].json)")
    args = parser.parse_args(argv)
    if not args.cpu_tiny and not torch.cuda.is_available():
        print("no CUDA device: nothing to benchmark (use --cpu-tiny for a dry run of the same code)")
        return 0
    device, size, frames, steps = ("cpu", 64, 16, 2) if args.cpu_tiny else ("cuda", 512, 16, 25)
    tmp = None if args.cpu_tiny or args.folder else Path(tempfile.mkdtemp(prefix="flashctl-gpu-smoke-"))
    folder = None if args.cpu_tiny else args.folder or tmp
    try:
        if folder is not None and not (folder / "unet").is_dir():
            memory.build_folder("animatediff", folder)
        point_args = argparse.Namespace(backbone="animatediff", threads=1 if args.cpu_tiny else 0, device=device)
        train = memory.child(point_args, folder, size, "defaults")
        result = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "size": size,
                  "frames": frames, "train": train, "animate": animate(folder, size, frames, steps, device)}
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    out = args.out or memory.RESULTS / ("gpu_smoke_cpu_tiny.json" if args.cpu_tiny else "gpu_smoke.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{size}px x {frames} frames on {result['device']}: weights {train['static']['total'] / 2**30:.2f} GB")
    for phase in train["phases"]:
        peak = phase.get("cuda_peak")
        shown = f"{peak / 2**30:.2f} GB (CUDA peak)" if peak else f"{phase['above_start'] / 2**30:.3f} GB above start"
        print(f"  train, {phase['phase']}: {shown}, {phase['seconds']} s")
    a = result["animate"]
    print(f"animate ({a['steps']} DDIM steps): {a['s_per_animation']} s, peak {a['peak_gb']} GB (target for the "
          f"training phases: {TARGET_GB} GB)")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
