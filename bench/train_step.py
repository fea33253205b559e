"""Seconds per training step: plain fine-tuning (#1) vs MAM (#5) at the same number of clips per step.

Run: .venv/bin/python bench/train_step.py [--clips 4] [--frames 8] [--size 32] [--steps 10] [--warmup 2]
                                          [--repeat 2] [--threads 1] [--no-vae-slicing]
Each run is ``flashctl.pipeline.train.train`` on the tiny AnimateDiff preset in a fresh process (so
its peak RSS is its own), timed between the reporter's per-step ``advance`` events; the first
``--warmup`` steps are dropped. #1 trains batches of ``--clips`` videos; #2 and #5 train
``--clips / 2`` originals plus as many augmented copies (#2: the copies are extra examples,
#5: motion + correspondence alignment). Runs alternate between variants to spread out noise
from other processes. Prints a table and writes bench/results/train_step.json; the target is
#5 / #1 <= 1.15.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

VARIANTS = {  # name -> [train] switches; batch_size is set from --clips
    "#1 plain": {"strong_augment": False, "mam": {"motion_align": False, "correspondence_align": False}},
    "#2 augment": {"strong_augment": True, "mam": {"motion_align": False, "correspondence_align": False}},
    "#5 MAM": {"strong_augment": True, "mam": {"motion_align": True, "correspondence_align": True}},
}
TARGET = 1.15


class StepClock:
    """A Reporter that stamps every ``advance`` (one per optimizer step)."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def start(self, task: str, total: int | None = None) -> None:
        if task == "train":
            self.stamps = [time.perf_counter()]

    def advance(self, n: int = 1, **metrics: float) -> None:
        self.stamps.append(time.perf_counter())

    def finish(self) -> None:
        pass

    def note(self, text: str, level: str = "info") -> None:
        pass


def _clips(n: int, frames: int, size: int) -> np.ndarray:
    """(N, F, S, S, 3) uint8: a bright square sliding right over a per-clip background colour."""
    rng = np.random.default_rng(0)
    clips = np.zeros((n, frames, size, size, 3), np.uint8)
    side = size // 4
    for i in range(n):
        clips[i] = rng.integers(0, 120, 3)
        for f in range(frames):
            x = f * (size - side) // max(frames - 1, 1)
            clips[i, f, side:2 * side, x:x + side] = 230
    return clips


def timed_train(config: Any, clips: np.ndarray, steps: int, warmup: int) -> list[float]:
    """``train()`` of a motion of ``clips`` ``(N, F, S, S, 3)`` uint8 in ``config``'s library for ``warmup + steps``
    steps -> the seconds of each step after the warm-up."""
    from flashctl.library import MotionLibrary
    from flashctl.manifest import ClipEntry, MotionManifest
    from flashctl.pipeline.train import train
    from flashctl.plugins import build_host

    library = MotionLibrary(config.library_path())
    entries = [ClipEntry(file=f"clips/c{i}.mp4", sha256=hashlib.sha256(b"%d" % i).hexdigest())
               for i in range(len(clips))]
    library.write_manifest("bench", MotionManifest(name="bench", prompt="a square slides right", clips=entries))
    library.save_frames("bench", clips, {"frames": clips.shape[1], "fps": 8.0, "size": clips.shape[2], "start": 0.0})
    clock = StepClock()
    train(config, library, "bench", build_host(), reporter=clock, steps=warmup + steps)
    return [round(float(s), 4) for s in np.diff(clock.stamps)[warmup:]]


def run_one(variant: str, args: argparse.Namespace) -> dict:
    """Train one variant in this process; returns its step times and peak RSS."""
    import torch

    from flashctl.config import FlashConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    batch = args.clips if variant.startswith("#1") else args.clips // 2
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = FlashConfig.model_validate({
            "source": str(root / "flashctl.toml"),
            "prepare": {"frames": args.frames, "size": args.size, "fps": 8.0},
            "train": {**VARIANTS[variant], "batch_size": batch, "detail_decoder": False, "lr": 1e-4},
            "animate": {"steps": 1, "formats": ["gif"]},
            "runtime": {"vae_slicing": not args.no_vae_slicing},
        })
        steps = timed_train(config, _clips(args.library_clips, args.frames, args.size), args.steps, args.warmup)
    return {"variant": variant, "batch_size": batch, "step_s": steps,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=4, help="videos per step (even): #1 batch; #5 half + half")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2, help="runs per variant, alternating")
    parser.add_argument("--threads", type=int, default=1, help="torch threads; 0 = torch's default")
    parser.add_argument("--library-clips", type=int, default=4)
    parser.add_argument("--no-vae-slicing", action="store_true",
                        help="runtime.vae_slicing = false: encode the augmented clips in one VAE call")
    parser.add_argument("--one", choices=list(VARIANTS), help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args)))
        return
    if args.clips % 2:
        parser.error("--clips must be even (MAM pairs B originals with B augmented copies)")

    child = [sys.executable, __file__, *sys.argv[1:]]
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for _ in range(args.repeat):
        for variant in VARIANTS:
            out = subprocess.run([*child, "--one", variant], capture_output=True, text=True, check=True)
            runs[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    rows = []
    for variant, results in runs.items():
        steps = [s for r in results for s in r["step_s"]]
        rows.append({"variant": variant, "batch_size": results[0]["batch_size"], "clips_per_step": args.clips,
                     "median_step_s": round(statistics.median(steps), 4), "min_step_s": round(min(steps), 4),
                     "peak_rss_mb": max(r["peak_rss_mb"] for r in results), "timed_steps": len(steps)})
    base = rows[0]["median_step_s"]
    for row in rows:
        row["ratio_to_plain"] = round(row["median_step_s"] / base, 3)
    print(f"tiny AnimateDiff, {args.frames} frames of {args.size} px, {args.clips} clips per step, "
          f"threads={runs['#1 plain'][0]['threads']}, vae_slicing={not args.no_vae_slicing}, "
          f"target #5/#1 <= {TARGET}")
    print(f"{'variant':<11} {'batch':>5} {'median_s':>9} {'min_s':>7} {'ratio':>6} {'peak_rss_mb':>11}")
    for r in rows:
        print(f"{r['variant']:<11} {r['batch_size']:>5} {r['median_step_s']:>9.3f} {r['min_step_s']:>7.3f} "
              f"{r['ratio_to_plain']:>6.2f} {r['peak_rss_mb']:>11.0f}")
    result = {"args": {k: v for k, v in vars(args).items() if k != "one"}, "target_ratio": TARGET, "rows": rows,
              "mam_ratio": rows[-1]["ratio_to_plain"], "within_target": rows[-1]["ratio_to_plain"] <= TARGET}
    out = Path(__file__).parent / "results" / "train_step.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
