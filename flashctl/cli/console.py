"""Rich output for the CLI: stderr console, progress reporter, error rendering."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

_LEVEL_STYLE = {"info": "dim", "warning": "yellow", "error": "red", "success": "green"}


PROGRESS_ENV = "FLASHCTL_PROGRESS_SECONDS"  # seconds between plain progress lines (non-TTY stderr)
PLAIN_EVERY = 5.0


class RichReporter:
    """Maps the library's Reporter events onto a rich progress bar on stderr.

    When stderr is not a terminal (CI logs, ``nohup``, pipes) there is no bar: every ``every`` seconds
    (default 5, or ``$FLASHCTL_PROGRESS_SECONDS``) one plain line says task, step/total, rate, ETA and
    the latest metrics (loss), and a task that printed any such line ends with a ``done`` line.
    """

    def __init__(self, console: Console = err, *, every: float | None = None,
                 clock: Callable[[], float] = time.monotonic, plain: bool | None = None) -> None:
        self.console = console
        self._progress: Progress | None = None
        self._task: Any = None
        self.plain = (not console.is_terminal) if plain is None else plain
        self.every = _plain_every() if every is None else every
        self.clock = clock
        self._plain: dict[str, Any] | None = None

    def start(self, task: str, total: int | None = None) -> None:
        self.finish()
        if self.plain:
            now = self.clock()
            self._plain = {"task": task, "total": total, "done": 0, "t0": now, "last": now, "metrics": {},
                           "printed": False, "base": 0}
            return
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[speed_text]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            TextColumn("{task.fields[metrics]}"), console=self.console, transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(task, total=total, metrics="", speed_text="")

    def advance(self, n: int = 1, **metrics: float) -> None:
        if self._plain is not None:
            p = self._plain
            if p["done"] == 0 and not metrics and n > 1:
                p["base"] = n  # a resumed run's skipped steps do not count towards the rate
            p["done"] += n
            p["metrics"].update(metrics)
            now = self.clock()
            if now - p["last"] >= self.every:
                p["last"], p["printed"] = now, True
                self._plain_line(now)
            return
        if self._progress is None:
            return
        text = "  ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        self._progress.update(self._task, advance=n, **({"metrics": text} if metrics else {}))
        speed = self._progress.tasks[0].speed
        if speed:
            self._progress.update(self._task, speed_text=f"{speed:.2f} it/s" if speed >= 1 else f"{1 / speed:.2f} s/it")

    def _plain_line(self, now: float, final: bool = False) -> None:
        p = self._plain
        total, done, elapsed = p["total"], p["done"], now - p["t0"]
        parts = [f"{p['task']}: {done}/{total}" if total else f"{p['task']}: {done}"]
        if total:
            parts[0] += f" ({100 * done / total:.0f}%)"
        counted = done - p["base"]
        if counted > 0 and elapsed > 0:
            rate = counted / elapsed
            parts.append(f"{rate:.2f} it/s" if rate >= 1 else f"{1 / rate:.2f} s/it")
            if total and not final:
                parts.append(f"eta {_duration((total - done) / rate)}")
        parts.append(f"{'done in' if final else 'elapsed'} {_duration(elapsed)}")
        parts += [f"{k}={v:.4g}" for k, v in p["metrics"].items()]
        self.console.print("  ".join(parts), markup=False, highlight=False)

    def finish(self) -> None:
        if self._plain is not None:
            if self._plain["printed"]:
                self._plain_line(self.clock(), final=True)
            self._plain = None
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def note(self, text: str, level: str = "info") -> None:
        prefix = {"warning": "warning: ", "error": "error: "}.get(level, "")
        self.console.print(f"[{_LEVEL_STYLE.get(level, '')}]{_escape(prefix + text)}[/]", markup=True, highlight=False)


def _plain_every() -> float:
    try:
        return max(0.0, float(os.environ.get(PROGRESS_ENV, PLAIN_EVERY)))
    except ValueError:
        return PLAIN_EVERY


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def print_error(message: str, hint: str | None = None) -> None:
    err.print(f"[bold red]error:[/] {_escape(message)}", highlight=False)
    if hint:
        err.print(f"[dim]hint:[/] {_escape(hint)}", highlight=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
