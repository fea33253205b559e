"""Rich output for the CLI: stderr console, progress reporter, error rendering."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

_LEVEL_STYLE = {"info": "dim", "warning": "yellow", "error": "red", "success": "green"}


class RichReporter:
    """Maps the library's Reporter events onto a rich progress bar on stderr."""

    def __init__(self, console: Console = err) -> None:
        self.console = console
        self._progress: Progress | None = None
        self._task: Any = None

    def start(self, task: str, total: int | None = None) -> None:
        self.finish()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[speed_text]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            TextColumn("{task.fields[metrics]}"), console=self.console, transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(task, total=total, metrics="", speed_text="")

    def advance(self, n: int = 1, **metrics: float) -> None:
        if self._progress is None:
            return
        text = "  ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        self._progress.update(self._task, advance=n, **({"metrics": text} if metrics else {}))
        speed = self._progress.tasks[0].speed
        if speed:
            self._progress.update(self._task, speed_text=f"{speed:.2f} it/s" if speed >= 1 else f"{1 / speed:.2f} s/it")

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def note(self, text: str, level: str = "info") -> None:
        prefix = {"warning": "warning: ", "error": "error: "}.get(level, "")
        self.console.print(f"[{_LEVEL_STYLE.get(level, '')}]{prefix}{text}[/]", markup=True, highlight=False)


def print_error(message: str, hint: str | None = None) -> None:
    err.print(f"[bold red]error:[/] {_escape(message)}", highlight=False)
    if hint:
        err.print(f"[dim]hint:[/] {_escape(hint)}", highlight=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
