"""flashctl eval: render held-out references with a motion and score them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from .animate import expand_images
from .console import RichReporter, err, out, print_json
from .options import JsonOpt, SetOpt
from .state import state


def eval_(
    action: Annotated[str, typer.Argument(help="A trained action in the motion library.")],
    images: Annotated[Optional[list[Path]], typer.Option("--images", help="Reference images or folders "
                      "(default: first frames of the action's own clips, scored against their continuations).")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Report folder (default: <motion>/eval).")] = None,
    set_: SetOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Score ACTION with the configured metrics; writes metrics.json."""
    from ..pipeline.evaluate import evaluate

    config = state.config(set_)
    reporter = RichReporter()
    result = evaluate(config, state.library(config), action, state.host(config),
                      images=expand_images(images) if images else None, reporter=reporter, out_dir=out_dir)
    reporter.finish()
    if json_:
        print_json({"action": result.action, "summary": result.summary, "path": str(result.path)})
        return
    table = Table(title=f"{result.action}: {len(result.per_sample)} samples")
    table.add_column("metric")
    table.add_column("mean", justify="right")
    for key, value in result.summary.items():
        table.add_row(key, f"{value:.4f}")
    out.print(table)
    err.print(f"wrote {result.path}")
