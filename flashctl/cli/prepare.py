"""flashctl prepare: ingest up to 16 clips of an action into the motion library."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .console import RichReporter, err, print_json
from .options import JsonOpt, SetOpt
from .state import state


def prepare(
    action: Annotated[str, typer.Argument(help="Action name: lowercase letters, digits, '-' and '_'.")],
    clips: Annotated[Optional[list[Path]], typer.Option("--clips", help="Clip files or folders (repeatable). "
                     "Omit to re-normalise an existing action's clips.")] = None,
    prompt: Annotated[Optional[str], typer.Option("--prompt", help="Text describing the action (needed for a new action).")] = None,
    set_: SetOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Probe, normalise and store clips of ACTION (trim, fps, square crop, resize, frame count)."""
    from ..pipeline.prepare import prepare as run

    config = state.config(set_)
    reporter = RichReporter()
    result = run(config, state.library(config), action, clips or None, prompt, reporter)
    reporter.finish()
    if json_:
        print_json({"action": result.action, "path": str(result.path), "clips": result.clips, "frames": result.frames,
                    "size": result.size, "fps": result.fps, "warnings": result.warnings})
    else:
        err.print(f"[green]prepared[/] {result.action}: {result.clips} clips -> {result.frames} frames "
                  f"at {result.size}x{result.size}, {result.fps:g} fps")
        typer.echo(str(result.path))
