"""The paper's ablation (METHOD.md rows #1..#6) as a benchmark on synthetic clips.

Synthesises ``--clips`` training clips of one action (``train`` appearance pool) and ``--heldout``
clips (``heldout`` pool: first frame = reference, the rest = ground truth) into a fresh project under
``--out``, then for every variant and seed: prepare an action from the same clips, train it with the
variant's ``[train]`` switches, evaluate it on the held-out clips (motion fidelity, first-frame
PSNR/SSIM, transition smoothness, temporal consistency) and time the training.

Run:   .venv/bin/python bench/ablation.py [--steps 200] [--seeds 0 1] [--quick]
       .venv/bin/python bench/ablation.py --sanity      (motion-fidelity ranking on real synth clips)
Writes ablation.json, ablation.md, comparison.md/html and every variant's metrics.json under --out;
progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import sys
import time

from flashctl.progress import NullReporter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path(__file__).parent / "results" / "ablation"
METRICS = ["motion-fidelity", "first-frame", "smoothness", "temporal-consistency"]
SWITCHES = ("strong_augment", "motion_align", "correspondence_align", "detail_decoder")


@dataclass(frozen=True)
class Variant:
    row: str  # "#1".."#6", as in METHOD.md
    name: str
    strong_augment: bool
    motion_align: bool
    correspondence_align: bool
    detail_decoder: bool

    def overrides(self) -> list[str]:
        """The config overrides that train this row (``section.key=value``)."""
        decoder = "detail-enhance" if self.detail_decoder else "vae"  # the stock decode for rows #1-#5
        return [f"train.{key}={str(getattr(self, key)).lower()}" for key in SWITCHES] + [f'model.decoder="{decoder}"']

    def marks(self) -> str:
        return " ".join("x" if getattr(self, key) else "-" for key in SWITCHES)


VARIANTS = [
    Variant("#1", "plain fine-tune", False, False, False, False),
    Variant("#2", "+ strong augment", True, False, False, False),
    Variant("#3", "+ motion align", True, True, False, False),
    Variant("#4", "+ correspondence align", True, False, True, False),
    Variant("#5", "MAM", True, True, True, False),
    Variant("#6", "FLASH (MAM + DED)", True, True, True, True),
]

# (column header, metrics.json summary key or "train_s")
COLUMNS = [
    ("motion fidelity ↑", "motion-fidelity/map_similarity"),
    ("first-frame PSNR ↑", "first-frame/psnr"),
    ("first-frame SSIM ↑", "first-frame/ssim"),
    ("jump ↓", "smoothness/jump"),
    ("consistency ↑", "temporal-consistency/similarity"),
    ("flicker ↓", "temporal-consistency/flicker"),
    ("train s", "train_s"),
]


class StderrReporter(NullReporter):
    """flashctl's Reporter protocol: only warnings, on stderr (the script logs one line per run itself)."""

    def note(self, text: str, level: str = "info") -> None:
        if level != "info":
            log(f"  {level}: {text}")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def settings(args: argparse.Namespace) -> argparse.Namespace:
    """``--quick`` shrinks the run to a smoke test: 2 steps (and DED steps), 2 held-out clips, 8 frames at 32 px."""
    if args.quick:
        args.steps, args.heldout, args.frames, args.size, args.animate_steps, args.ded_steps = 2, 2, 8, 32, 2, 2
        args.clips = min(args.clips, 4)
    return args


def make_project(out: Path, args: argparse.Namespace) -> tuple[Path, list[Path]]:
    """A fresh project in ``out``: flashctl.toml, train clips, held-out clips. Returns (config, held-out)."""
    from flashctl_synth.render import write_clips

    project = out / "project"
    if project.exists():
        shutil.rmtree(project)
    (project / "motions").mkdir(parents=True)
    (project / "flashctl.toml").write_text(
        'schema_version = 1\n[library]\npath = "motions"\n'
        f"[prepare]\nframes = {args.frames}\nsize = {args.size}\nfps = 8.0\n"
        f'[options.backbone.animatediff]\npreset = "tiny"\n')
    write_clips(args.action, args.clips, project / "clips" / "train", frames=args.frames, size=args.size,
                split="train")
    heldout = write_clips(args.action, args.heldout, project / "clips" / "heldout", frames=args.frames,
                          size=args.size, split="heldout")
    return project / "flashctl.toml", heldout


def variant_config(config_path: Path, variant: Variant, seed: int, args: argparse.Namespace) -> Any:
    from flashctl.config import load_config

    metrics = "[" + ", ".join(f'"{m}"' for m in METRICS) + "]"
    return load_config(config_path, variant.overrides() + [
        f"train.steps={args.steps}", f"train.seed={seed}", f"animate.seed={seed}",
        f"animate.steps={args.animate_steps}", f"eval.metrics={metrics}", f"runtime.threads={args.threads}"]
        + ([f"train.lr={args.lr}"] if args.lr is not None else [])
        + ([f"options.decoder.detail-enhance.train_steps={args.ded_steps}"] if args.ded_steps is not None else []))


def run_variant(config_path: Path, variant: Variant, seed: int, heldout: list[Path], out: Path,
                args: argparse.Namespace) -> dict[str, Any]:
    """Prepare, train and evaluate one (variant, seed); returns its scores, times and metrics.json."""
    from flashctl.errors import FlashctlError
    from flashctl.library import MotionLibrary
    from flashctl.pipeline.evaluate import evaluate
    from flashctl.pipeline.motion_weights import LORA_FILE
    from flashctl.pipeline.prepare import prepare
    from flashctl.pipeline.train import train
    from flashctl.plugins import host_for

    config = variant_config(config_path, variant, seed, args)
    host = host_for(config)
    library = MotionLibrary(config.library_path())
    action = f"{args.action}-v{variant.row[1:]}-s{seed}"
    reporter = StderrReporter()
    record: dict[str, Any] = {"row": variant.row, "seed": seed, "action": action}
    try:
        prepare(config, library, action, [config_path.parent / "clips" / "train"],
                f"a person doing a {args.action.replace('_', ' ')}", reporter)
        t0 = time.perf_counter()
        trained = train(config, library, action, host, reporter=reporter)
        record["train_s"] = time.perf_counter() - t0
        record["final_loss"] = trained.final_loss
        # DED fitted = the motion saved decoder weights besides its LoRA (the decoder's file name is its own)
        record["ded_fitted"] = any(f.name != LORA_FILE for f in Path(trained.weights_dir).glob("*.safetensors"))
        t0 = time.perf_counter()
        result = evaluate(config, library, action, host, clips=heldout, reporter=reporter,
                          out_dir=out / "variants" / action)
        record["eval_s"] = time.perf_counter() - t0
    except FlashctlError as exc:  # one row that fails (a refused switch combination) must not lose the others
        record["error"] = f"{exc} ({exc.hint})" if getattr(exc, "hint", "") else str(exc)
        return record
    record["summary"] = result.summary
    record["metrics_json"] = str(result.path)
    return record


def _value(record: dict[str, Any], key: str) -> float | None:
    value = record.get("train_s") if key == "train_s" else record.get("summary", {}).get(key)
    return value if value is not None and math.isfinite(value) else None


def aggregate(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per variant: mean and std (over seeds) of every column; ``error`` if every seed failed."""
    rows = []
    for variant in VARIANTS:
        mine = [r for r in records if r["row"] == variant.row]
        cells = {}
        for _, key in COLUMNS:
            values = [v for v in (_value(r, key) for r in mine) if v is not None]
            cells[key] = {"mean": statistics.fmean(values) if values else None,
                          "std": statistics.stdev(values) if len(values) > 1 else None, "n": len(values)}
        errors = sorted({r["error"] for r in mine if "error" in r})
        if variant.detail_decoder and any(r.get("ded_fitted") is False for r in mine):
            errors.append("train saved no detail-decoder weights: this row decoded with an unfitted (zero-init) "
                          "DED, i.e. exactly like the stock VAE")
        rows.append({"row": variant.row, "name": variant.name,
                     **{key: getattr(variant, key) for key in SWITCHES}, "cells": cells, "errors": errors})
    return rows


def _cell(cell: dict[str, Any]) -> str:
    if cell["mean"] is None:
        return "n/a"
    digits = 1 if abs(cell["mean"]) >= 10 else 3
    text = f"{cell['mean']:.{digits}f}"
    return text + (f" ± {cell['std']:.{digits}f}" if cell["std"] is not None else "")


def markdown_table(rows: list[dict[str, Any]]) -> str:
    header = ["variant", "aug", "motion", "corr", "DED"] + [title for title, _ in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 5 + "---:|" * len(COLUMNS)]
    for row in rows:
        marks = ["x" if row[key] else "-" for key in SWITCHES]
        lines.append("| " + " | ".join([f"{row['row']} {row['name']}"] + marks
                                       + [_cell(row["cells"][key]) for _, key in COLUMNS]) + " |")
    errors = [f"- {row['row']}: {e}" for row in rows for e in row["errors"]]
    return "\n".join(lines + ([""] + ["Notes and failed runs:"] + errors if errors else [])) + "\n"


def machine() -> dict[str, Any]:
    import torch

    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load1_at_end": round(os.getloadavg()[0], 2)}


def run_ablation(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; writes ablation.json, ablation.md and the comparison under ``args.out``."""
    import torch

    from flashctl.pipeline.report import compare, write_comparison

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    config_path, heldout = make_project(out, args)
    records = []
    for seed in args.seeds:
        for variant in VARIANTS:
            record = run_variant(config_path, variant, seed, heldout, out, args)
            records.append(record)
            if "error" in record:
                log(f"{variant.row} seed {seed}: FAILED: {record['error']}")
            else:
                log(f"{variant.row} seed {seed}: train {record['train_s']:.1f}s (loss {record['final_loss']:.4f}), "
                    f"eval {record['eval_s']:.1f}s, motion fidelity "
                    f"{record['summary'].get('motion-fidelity/map_similarity', float('nan')):.3f}")
            write_report(out, args, started, records)
    scored = [Path(r["metrics_json"]) for r in records if "metrics_json" in r]
    written = write_comparison(compare(scored), out) if scored else {}
    return write_report(out, args, started, records, comparison={k: str(v) for k, v in written.items()})


def write_report(out: Path, args: argparse.Namespace, started: float, records: list[dict[str, Any]],
                 comparison: dict[str, str] | None = None) -> dict[str, Any]:
    """ablation.json and ablation.md from the runs so far (rewritten after every run: a stopped run keeps them)."""
    rows = aggregate(records)
    table = markdown_table(rows)
    report = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
              "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "machine": machine(), "wall_s": time.perf_counter() - started, "rows": rows, "runs": records,
              "comparison": comparison or {}}
    (out / "ablation.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "ablation.md").write_text(f"# Ablation ({args.action}, {args.steps} steps, seeds {args.seeds})\n\n"
                                     + table)
    report["table"] = table
    return report


def sanity(args: argparse.Namespace, samples: int = 8) -> dict[str, dict[str, float]]:
    """Motion-fidelity ranking on real synth clips of ``args.action`` vs ``args.other``: mean ± std over
    ``samples`` held-out targets of: the target itself, the same action in another appearance, the other
    action in another appearance, the first frame plus fresh noise in every frame (change everywhere, no
    motion: what an untrained model's flicker scores) and the first frame frozen."""
    import torch

    from flashctl.plugins import build_host
    from flashctl.video import frames_to_tensor
    from flashctl_synth.render import render_clip

    score = build_host().registry.create("metric", "motion-fidelity", {}, ctx=None)

    def clip(action: str, seed: int) -> torch.Tensor:
        video, _ = render_clip(action, frames=args.frames, size=args.size, seed=seed, split="heldout")
        return frames_to_tensor(video)  # (F, 3, S, S)

    found: dict[str, list[float]] = {"ground truth": [], "same action, other appearance": [],
                                     "other action": [], "first frame + per-frame noise": [],
                                     "frozen first frame": []}
    for i in range(samples):
        target = clip(args.action, i)
        noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(i))  # (F, 3, S, S)
        candidates = [target, clip(args.action, 1000 + i), clip(args.other, 1000 + i),
                      (target[:1] + 0.1 * noise).clamp(-1, 1), target[:1].expand_as(target)]
        for name, video in zip(found, candidates):
            found[name].append(score(video, reference=target[0], target=target)["map_similarity"])
    return {name: {"mean": statistics.fmean(v), "std": statistics.stdev(v)} for name, v in found.items()}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--action", default="jumping_jack", help="synth action to learn")
    p.add_argument("--clips", type=int, default=16, help="training clips")
    p.add_argument("--heldout", type=int, default=4, help="held-out clips (references + ground truth)")
    p.add_argument("--steps", type=int, default=200, help="training steps per variant")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training/sampling seeds")
    p.add_argument("--size", type=int, default=64, help="square side in pixels")
    p.add_argument("--frames", type=int, default=16, help="frames per clip")
    p.add_argument("--lr", type=float, default=None, help="train.lr (default: the config's)")
    p.add_argument("--ded-steps", type=int, default=None, help="DED fitting steps (default: the plugin's)")
    p.add_argument("--animate-steps", type=int, default=20, help="denoising steps when evaluating")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (holds a fresh project)")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 steps, 2 held-out clips, 8 frames at 32 px")
    p.add_argument("--sanity", action="store_true", help="only print the motion-fidelity sanity ranking")
    p.add_argument("--other", default="squat", help="the contrasting action for --sanity")
    return settings(p.parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.sanity:
        ranking = sanity(args)
        print(f"motion-fidelity map_similarity vs a held-out {args.action} clip "
              f"({args.frames} frames, {args.size} px, 8 targets):")
        for name, value in ranking.items():
            print(f"  {name:32s} {value['mean']:.3f} ± {value['std']:.3f}")
        return 0
    report = run_ablation(args)
    print(report["table"], end="")
    print(f"wall {report['wall_s']:.0f}s; wrote {Path(args.out) / 'ablation.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
