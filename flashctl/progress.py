"""How long-running library work reports progress without importing rich.

The library calls ``reporter.start(task, total)``, then ``advance(n, **metrics)`` as work is done,
then ``finish()``; ``note(text)`` is a free-form line (a warning, a saved path). The CLI maps this
onto rich progress bars on stderr; tests use :class:`ListReporter` to assert on the events.
"""

from __future__ import annotations

from typing import Any, Protocol


class Reporter(Protocol):
    def start(self, task: str, total: int | None = None) -> None: ...
    def advance(self, n: int = 1, **metrics: float) -> None: ...
    def finish(self) -> None: ...
    def note(self, text: str, level: str = "info") -> None: ...


class NullReporter:
    """Reports nothing; the default for library calls."""

    def start(self, task: str, total: int | None = None) -> None:
        pass

    def advance(self, n: int = 1, **metrics: float) -> None:
        pass

    def finish(self) -> None:
        pass

    def note(self, text: str, level: str = "info") -> None:
        pass


class ListReporter:
    """Records every event as a tuple, for tests and notebooks."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def start(self, task: str, total: int | None = None) -> None:
        self.events.append(("start", (task, total)))

    def advance(self, n: int = 1, **metrics: float) -> None:
        self.events.append(("advance", (n, dict(metrics))))

    def finish(self) -> None:
        self.events.append(("finish", None))

    def note(self, text: str, level: str = "info") -> None:
        self.events.append(("note", (level, text)))

    def notes(self, level: str | None = None) -> list[str]:
        return [t for kind, v in self.events if kind == "note" for (lv, t) in [v] if level in (None, lv)]
