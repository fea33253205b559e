"""The paper's ablation (METHOD.md rows #1..#6) beside the base alone and "copy the first frame".

Per action, a project under ``--out`` whose ``flashctl.toml`` is the repository's (the embedded base,
animate's guidance, anchoring and sampler; ``--config`` names another), with ``--clips`` training
clips and ``--heldout`` held-out clips (first frame = reference, the clip = ground truth) of the
``--heldout-split`` people: ``heldout`` (the held-out appearance pool) or ``drawn`` (outlined flat cartoons
on paper, like ``examples/drawn_figure.png``). A project's clips keep their split (in each clip's JSON), and a
later invocation with another split refuses the project: score drawn people in a fresh ``--out`` folder.
``--appearance diverse`` draws a different train-pool person for every training clip;
``narrow`` (the setting MAM is for) only ``--people`` of them, each clip another variation of the
action. Rows (``--rows``, any subset, in any number of invocations):

* ``base``: the base alone, prompted with the action's text (the motion LoRA at strength 0);
* ``frozen``: copy the first frame (every frame is the reference; no model);
* ``1`` .. ``6``: METHOD.md's rows, trained from config alone.

Besides the ``[eval] metrics`` (on samples), every row gets ``recognised/accuracy``: the share of samples
whose nearest real action by the same held-out person is the right one (keypoint estimator of the synthetic
world, ``flashctl_synth.keypoint_metric.recognise``). Trained rows also get ``heldout-loss/structure`` and ``/detail``:
the motion's denoising loss on the held-out clips over the base alone's (``experiments/heldout_loss.py``; below
1 = the motion explains these new people's real motion better than the base), and ``train-loss/...``, the
same on as many training clips: a train ratio far below the held-out one is a motion that fits the
training people only.

``--reuse-from DIR`` scores motions an earlier ablation folder already trained (same action, row and seed:
its ``projects/<action>/motions/<name>`` is copied here) instead of training them again, e.g. after a
sampler or metric change, or on drawn people (``--heldout-split drawn``); rows it does not have are trained
as usual.

Every finished (action, row, seed) is appended to ``runs.jsonl`` and skipped when the command runs
again, so a long ablation resumes row by row; ``ablation.json`` and ``ablation.md`` (mean ± std over
seeds of every metric in ``[eval] metrics`` of the project config, or ``--metrics``) are rewritten
after every run.

Run:   .venv/bin/python experiments/ablation.py --actions bow --rows base frozen 1 6 --seeds 0 1 2 --steps 400
       .venv/bin/python experiments/ablation.py --quick      (smoke run: 2 steps, 8 frames at 32 px)
Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flashctl.progress import NullReporter

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "experiments" / "results" / "ablation"
SWITCHES = ("strong_augment", "motion_align", "correspondence_align", "detail_decoder")
MAM_SWITCHES = ("motion_align", "correspondence_align")  # under [train.mam]
RUNS_FILE = "runs.jsonl"
LOSS_BANDS = {"structure": lambda t: t >= 700, "detail": lambda t: t <= 300}

sys.path.insert(0, str(Path(__file__).parent))  # the sibling experiment, also when loaded by path
from heldout_loss import loss_ratios  # noqa: E402


@dataclass(frozen=True)
class Variant:
    row: str  # "base", "frozen", "#1".."#6" (METHOD.md)
    name: str
    strong_augment: bool = False
    motion_align: bool = False
    correspondence_align: bool = False
    detail_decoder: bool = False

    @property
    def trained(self) -> bool:
        return self.row.startswith("#")

    def overrides(self) -> list[str]:
        """The config overrides that train (or, for ``base``, sample) this row (``section.key=value``)."""
        decoder = "detail-enhance" if self.detail_decoder else "vae"  # the stock decode unless DED is on
        switches = [f"train.{'mam.' if key in MAM_SWITCHES else ''}{key}={str(getattr(self, key)).lower()}"
                    for key in SWITCHES]
        return switches + [f'model.decoder="{decoder}"'] + (["animate.strength=0"] if self.row == "base" else [])

    def marks(self) -> str:
        return " ".join("x" if getattr(self, key) else "-" for key in SWITCHES)


VARIANTS = [
    Variant("base", "base alone (strength 0)"),
    Variant("frozen", "copy the first frame"),
    Variant("#1", "plain fine-tune"),
    Variant("#2", "+ strong augment", True),
    Variant("#3", "+ motion align", True, True),
    Variant("#4", "+ correspondence align", True, False, True),
    Variant("#5", "MAM", True, True, True),
    Variant("#6", "FLASH (MAM + DED)", True, True, True, True),
]
ROW_NAMES = {v.row.lstrip("#"): v for v in VARIANTS}


class StderrReporter(NullReporter):
    """flashctl's Reporter protocol: only warnings, on stderr (the script logs one line per run itself)."""

    def note(self, text: str, level: str = "info") -> None:
        if level != "info":
            log(f"  {level}: {text}")


class FrozenAnimator:
    """``render`` returns the reference repeated: the "copy the first frame" baseline, scored like a model."""

    def __init__(self, frames: int, size: int) -> None:
        self.frames, self.size = frames, size

    def render(self, image: np.ndarray, seed: int) -> np.ndarray:
        from flashctl.video import fit_square

        return np.repeat(fit_square(image, self.size)[None], self.frames, axis=0)  # (F, S, S, 3)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def settings(args: argparse.Namespace) -> argparse.Namespace:
    """``--quick`` shrinks the run to a smoke test: 2 steps (and DED steps), 2 held-out clips, 8 frames at 32 px."""
    if args.quick:
        args.steps, args.heldout, args.frames, args.size, args.animate_steps, args.ded_steps = 2, 2, 8, 32, 2, 2
        args.clips = min(args.clips, 4)
    args.variants = [ROW_NAMES[r.lstrip("#")] for r in args.rows]
    return args


def project_dir(out: Path, action: str) -> Path:
    return out / "projects" / action


def make_project(out: Path, action: str, args: argparse.Namespace) -> tuple[Path, list[Path]]:
    """The action's project (made once, reused on resume): flashctl.toml, train clips, held-out clips.

    Returns (config path, held-out clips). Refuses a project whose held-out clips are of another split.
    """
    from flashctl_synth.render import write_clips

    project = project_dir(out, action).resolve()  # the config names its library by absolute path
    config = project / "flashctl.toml"
    heldout_dir = project / "clips" / "heldout"
    if not config.is_file():
        (project / "motions").mkdir(parents=True, exist_ok=True)
        people = args.people if args.appearance == "narrow" else None
        write_clips(action, args.clips, project / "clips" / "train", frames=args.frames, size=args.size,
                    split="train", people=people, canonical=args.canonical)
        write_clips(action, args.heldout, heldout_dir, frames=args.frames, size=args.size,
                    split=args.heldout_split, seed=100, canonical=args.canonical)
        # the project config is the one `flashctl animate` uses, with this project's library
        text = Path(args.config).read_text().replace('path = "motions"', f'path = "{project / "motions"}"')
        config.write_text(text)
    clips = sorted(heldout_dir.glob("*.mp4"))
    split = json.loads(clips[0].with_suffix(".json").read_text())["split"]  # every clip's JSON names its split
    if split != args.heldout_split:
        raise SystemExit(f"{project}: its held-out clips are {split} people, not --heldout-split "
                         f"{args.heldout_split}; pass a fresh --out folder")
    return config, clips


def variant_config(config_path: Path, variant: Variant, seed: int, args: argparse.Namespace) -> Any:
    from flashctl.config import load_config

    extra = [f"prepare.frames={args.frames}", f"prepare.size={args.size}", f"train.steps={args.steps}",
             f"train.seed={seed}", f"animate.seed={seed}", f"animate.steps={args.animate_steps}",
             f"runtime.threads={args.threads}"]
    if args.metrics:
        extra.append("eval.metrics=[" + ", ".join(f'"{m}"' for m in args.metrics) + "]")
    for key, value in (("train.lr", args.lr), ("animate.guidance_scale", args.guidance),
                       ("train.lora_rank", args.rank), ("train.lora_alpha", args.rank),
                       ("options.decoder.detail-enhance.train_steps", args.ded_steps)):
        if value is not None:
            extra.append(f"{key}={value}")
    if args.base is not None:
        extra.append(f'options.backbone.animatediff.base="{args.base}"')
    return load_config(config_path, variant.overrides() + extra + list(args.set))


def run_variant(config_path: Path, action: str, variant: Variant, seed: int, heldout: list[Path], out: Path,
                args: argparse.Namespace) -> dict[str, Any]:
    """Prepare, train (a trained row) and evaluate one (action, row, seed); returns its scores and times."""
    from flashctl.errors import FlashctlError
    from flashctl.library import MotionLibrary
    from flashctl.pipeline.animate import load_animator
    from flashctl.pipeline.evaluate import evaluate
    from flashctl.pipeline.prepare import prepare
    from flashctl.pipeline.train import train
    from flashctl.plugins import host_for
    from flashctl_synth.actions import ACTIONS

    config = variant_config(config_path, variant, seed, args)
    host = host_for(config)
    library = MotionLibrary(config.library_path())
    name = f"{action}-{variant.row.lstrip('#')}-s{seed}"
    reporter = StderrReporter()
    record: dict[str, Any] = {"action": action, "row": variant.row, "seed": seed, "motion": name,
                              "appearance": args.appearance, "heldout_split": args.heldout_split,
                              "steps": args.steps if variant.trained else 0}
    try:
        if library.exists(name):
            library.remove(name)
        reused = reuse_motion(args.reuse_from, action, name, library) if args.reuse_from else None
        if reused is None:
            prepare(config, library, name, [config_path.parent / "clips" / "train"], ACTIONS[action].prompt, reporter)
        animator = FrozenAnimator(args.frames, args.size) if variant.row == "frozen" else None
        if reused is not None:
            record.update(reused_from=str(reused), **reused_record(args.reuse_from, action, variant, seed))
        if variant.row != "frozen" and reused is None:
            t0 = time.perf_counter()
            # the base row trains one step only to have a motion to load; strength 0 then removes it entirely
            trained = train(config, library, name, host, reporter=reporter, steps=None if variant.trained else 1)
            if variant.trained:
                record.update(train_s=time.perf_counter() - t0, final_loss=trained.final_loss)
        if variant.row != "frozen":
            animator = load_animator(config, library, name, host)  # one load for the eval and the loss probes
        t0 = time.perf_counter()
        result = evaluate(config, library, name, host, clips=heldout, reporter=reporter, animator=animator,
                          out_dir=out / "variants" / name)
        result.summary["recognised/accuracy"] = recognition(result.videos, heldout, action)
        result.higher_is_better["recognised/accuracy"] = True
        if variant.trained:
            train_clips = sorted((config_path.parent / "clips" / "train").glob("*.mp4"))[:len(heldout)]
            for label, clips in (("heldout-loss", heldout), ("train-loss", train_clips)):
                result.summary.update(loss_columns(label, loss_ratios(animator, config, clips)))
                result.higher_is_better.update({f"{label}/{band}": False for band in LOSS_BANDS})
        record["eval_s"] = time.perf_counter() - t0
    except FlashctlError as exc:  # one row that fails must not lose the others
        record["error"] = str(exc)  # the message and its hint
        return record
    record["summary"] = result.summary
    record["higher_is_better"] = result.higher_is_better
    record["metrics_json"] = str(result.path)
    return record


def reuse_motion(source: Path, action: str, name: str, library: Any) -> Path | None:
    """Copy ``name``, trained in the ablation folder ``source``, into ``library``; its path there, or None."""
    import shutil

    from flashctl.library import MotionLibrary

    theirs = MotionLibrary(project_dir(Path(source), action) / "motions")
    if not theirs.is_trained(name):
        return None
    shutil.copytree(theirs.path(name), library.path(name), symlinks=True, ignore=shutil.ignore_patterns(".cache"))
    return theirs.path(name)


def reused_record(source: Path, action: str, variant: Variant, seed: int) -> dict[str, Any]:
    """The training figures (``train_s``, ``final_loss``) ``source``'s runs.jsonl recorded for this row."""
    for record in load_runs(Path(source)):
        if (record["action"], record["row"], record["seed"]) == (action, variant.row, seed):
            return {k: record[k] for k in ("train_s", "final_loss") if k in record}
    return {}


def recognition(videos: list[np.ndarray], clips: list[Path], action: str) -> float:
    """Share of generated videos whose nearest real action, done by the same held-out person, is ``action``."""
    from flashctl.video import frames_to_tensor
    from flashctl_synth.keypoint_metric import recognise

    hits = [recognise(frames_to_tensor(video), json.loads(clip.with_suffix(".json").read_text()))[0] == action
            for video, clip in zip(videos, clips)]
    return sum(hits) / len(hits)


def loss_columns(label: str, ratios: dict[int, dict[str, float]]) -> dict[str, float]:
    """Mean motion/base denoising-loss ratio per band of timesteps (``structure``: t >= 700, ``detail``: t <= 300)."""
    return {f"{label}/{band}": statistics.fmean(r["ratio"] for t, r in ratios.items() if pick(t))
            for band, pick in LOSS_BANDS.items()}


def load_runs(out: Path) -> list[dict[str, Any]]:
    """The runs of an ablation folder, or of a copy of its ``runs.jsonl`` (``bench/data/*.jsonl``)."""
    path = out if out.suffix == ".jsonl" else out / RUNS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def columns(records: list[dict[str, Any]]) -> list[str]:
    """Every summary key any run reported (in first-seen order), then ``train_s``."""
    keys: dict[str, None] = {}
    for record in records:
        keys.update(dict.fromkeys(record.get("summary", {})))
    return [*keys, "train_s"]


def aggregate(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (action, variant) that ran: mean, std and n (over seeds) of every column."""
    keys = columns(records)
    rows = []
    for action in dict.fromkeys(r["action"] for r in records):
        for variant in VARIANTS:
            mine = [r for r in records if r["action"] == action and r["row"] == variant.row]
            if not mine:
                continue
            cells = {}
            for key in keys:
                values = [v for v in (_finite(r.get("summary", {}).get(key, r.get(key))) for r in mine)
                          if v is not None]
                cells[key] = {"mean": statistics.fmean(values) if values else None,
                              "std": statistics.stdev(values) if len(values) > 1 else None, "n": len(values)}
            rows.append({"action": action, "row": variant.row, "name": variant.name, "marks": variant.marks(),
                         "seeds": sorted(r["seed"] for r in mine), "cells": cells,
                         "errors": sorted({r["error"] for r in mine if "error" in r})})
    return rows


def _cell(cell: dict[str, Any]) -> str:
    if cell["mean"] is None:
        return "n/a"
    digits = 1 if abs(cell["mean"]) >= 10 else 3
    text = f"{cell['mean']:.{digits}f}"
    return text + (f" ± {cell['std']:.{digits}f}" if cell["std"] is not None else "")


def _arrow(direction: Any) -> str:
    return {True: " ↑", False: " ↓"}.get(direction, "")


def markdown_table(rows: list[dict[str, Any]], directions: dict[str, Any]) -> str:
    keys = list(rows[0]["cells"]) if rows else []
    header = ["action", "variant", "aug motion corr DED", "seeds"] + [k + _arrow(directions.get(k)) for k in keys]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 4 + "---:|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join([row["action"], f"{row['row']} {row['name']}", row["marks"],
                                         ",".join(map(str, row["seeds"]))]
                                        + [_cell(row["cells"][k]) for k in keys]) + " |")
    errors = [f"- {row['action']} {row['row']}: {e}" for row in rows for e in row["errors"]]
    return "\n".join(lines + ([""] + ["Failed runs:"] + errors if errors else [])) + "\n"


def machine() -> dict[str, Any]:
    import torch

    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load1_at_end": round(os.getloadavg()[0], 2)}


def write_report(out: Path, args: argparse.Namespace, records: list[dict[str, Any]]) -> dict[str, Any]:
    """ablation.json and ablation.md from every run recorded under ``out`` (a stopped run keeps them)."""
    rows = aggregate(records)
    directions: dict[str, Any] = {}
    for record in records:
        directions.update(record.get("higher_is_better", {}))
    table = markdown_table(rows, directions)
    report = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
              "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                           if k != "variants"},
              "machine": machine(), "rows": rows, "runs": records, "higher_is_better": directions}
    (out / "ablation.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "ablation.md").write_text(f"# Ablation ({args.appearance} appearance, {args.steps} steps, "
                                     f"{args.heldout_split} held-out people)\n\n" + table)
    report["table"] = table
    return report


def run_ablation(args: argparse.Namespace) -> dict[str, Any]:
    """Every requested (action, row, seed) not already in ``runs.jsonl``; returns the report of all runs."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = load_runs(out)
    done = {(r["action"], r["row"], r["seed"]) for r in records if "error" not in r}
    for action in args.actions:
        config_path, heldout = make_project(out, action, args)
        for seed in args.seeds:
            for variant in args.variants:
                if (action, variant.row, seed) in done:
                    log(f"{action} {variant.row} seed {seed}: done earlier, skipped")
                    continue
                record = run_variant(config_path, action, variant, seed, heldout, out, args)
                records.append(record)
                with (out / RUNS_FILE).open("a") as f:
                    f.write(json.dumps(record) + "\n")
                summary = ", ".join(f"{k} {v:.3f}" for k, v in record.get("summary", {}).items())
                log(f"{action} {variant.row} seed {seed}: " + (f"FAILED: {record['error']}" if "error" in record else
                    f"train {record.get('train_s', 0):.0f}s, eval {record['eval_s']:.0f}s; {summary}"))
                write_report(out, args, records)
    return write_report(out, args, records)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--actions", nargs="+", default=["bow"], help="synth actions to learn")
    p.add_argument("--rows", nargs="+", default=["base", "frozen", "1", "2", "3", "4", "5", "6"],
                   choices=[*ROW_NAMES, *(f"#{i}" for i in range(1, 7))], help="rows to run")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training/sampling seeds")
    p.add_argument("--appearance", choices=["diverse", "narrow"], default="diverse",
                   help="training people: all different (diverse) or only --people of them (narrow)")
    p.add_argument("--people", type=int, default=2, help="people in a narrow training set")
    p.add_argument("--canonical", action="store_true",
                   help="training and held-out people all face right and lead with the right limbs")
    p.add_argument("--clips", type=int, default=16, help="training clips")
    p.add_argument("--heldout", type=int, default=8, help="held-out clips (references + ground truth)")
    p.add_argument("--heldout-split", choices=["heldout", "drawn"], default="heldout",
                   help="the held-out clips' people: the held-out appearance pool, or drawn cartoons")
    p.add_argument("--steps", type=int, default=200, help="training steps per trained row")
    p.add_argument("--lr", type=float, default=None, help="train.lr (default: the project config's)")
    p.add_argument("--rank", type=int, default=None, help="train.lora_rank (alpha = rank)")
    p.add_argument("--guidance", type=float, default=None, help="animate.guidance_scale (default: the config's)")
    p.add_argument("--base", default=None, help="options.backbone.animatediff.base (default: the config's)")
    p.add_argument("--config", type=Path, default=REPO / "flashctl.toml", help="project config to start from")
    p.add_argument("--metrics", nargs="+", default=None, help="eval metrics (default: the config's [eval] metrics)")
    p.add_argument("--set", nargs="*", default=[], help="more config overrides, section.key=value")
    p.add_argument("--size", type=int, default=64, help="square side in pixels")
    p.add_argument("--frames", type=int, default=16, help="frames per clip")
    p.add_argument("--ded-steps", type=int, default=None, help="DED fitting steps (default: the plugin's)")
    p.add_argument("--animate-steps", type=int, default=20, help="denoising steps when evaluating")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (resumed if it has runs.jsonl)")
    p.add_argument("--reuse-from", type=Path, default=None,
                   help="an earlier ablation folder: score the motions it trained instead of training them again")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 steps, 2 held-out clips, 8 frames at 32 px")
    return settings(p.parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    report = run_ablation(args)
    print(report["table"], end="")
    print(f"wrote {Path(args.out) / 'ablation.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
