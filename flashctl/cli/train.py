"""flashctl train: learn an action's motion (LoRA + Detail Enhancement Decoder)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .console import RichReporter, err, print_json
from .options import JsonOpt, SetOpt
from .state import state


def train(
    action: Annotated[str, typer.Argument(help="A prepared action in the motion library.")],
    steps: Annotated[Optional[int], typer.Option("--steps", min=1, help="LoRA training steps (default: train.steps). Then come the detail decoder's own fit (options.decoder.detail-enhance.train_steps; off with train.detail_decoder = false) and a preview render; each phase is announced.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the action's last checkpoint.")] = False,
    tracker: Annotated[Optional[list[str]], typer.Option("--tracker", metavar="NAME", help="Log the run to this experiment tracker: tensorboard, wandb, jsonl or one a plugin adds (`flashctl plugins --kind tracker`). Repeatable; replaces train.trackers (default: none).")] = None,
    tracker_dir: Annotated[Optional[Path], typer.Option("--tracker-dir", metavar="DIR", help="Where trackers write, one folder per run (default: the action's .cache/runs/).")] = None,
    set_: SetOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Fine-tune the backbone on ACTION's clips and save the motion atomically."""
    from ..pipeline.train import train as run

    trackers = [f"train.trackers={json.dumps(tracker)}"] if tracker else []
    config = state.config([*(set_ or []), *trackers])
    reporter = RichReporter()
    result = run(config, state.library(config), action, state.host(config), reporter=reporter, steps=steps, resume=resume,
                 tracker_dir=tracker_dir)
    reporter.finish()
    if not result.main_process:  # under `accelerate launch`, only the main process reports
        return
    if json_:
        print_json({"action": result.action, "steps": result.steps, "final_loss": result.final_loss,
                    "seconds": result.seconds, "weights": str(result.weights_dir)})
    else:
        err.print(f"[green]trained[/] {result.action}: {result.steps} steps in {result.seconds:.1f} s, "
                  f"final loss {result.final_loss:.4f}")
        typer.echo(str(result.weights_dir))
