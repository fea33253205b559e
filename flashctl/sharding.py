"""Share ``animate`` and ``eval`` work over the processes of ``accelerate launch``.

``accelerate launch --multi_gpu --num_processes P -m flashctl animate -i FOLDER`` starts P processes with
the same arguments. Every process expands the same sorted list; each takes the items whose index is its
own process index modulo P (round robin: neighbouring files, often alike in cost, go to different
processes, so the shares finish close together). Items keep their global index, so output names, seeds
and the order of results are those of a single-process run. The main process (index 0) decides what all
must agree on (:meth:`Shard.broadcast`) and collects the others' results (:meth:`Shard.gather`).

Without a launch (``WORLD_SIZE`` unset or 1) there is one shard and no process group is made. Under a
launch the group is accelerate's: ``runtime.device = "cpu"`` gives gloo, a GPU device one GPU per process
(``cuda:LOCAL_RANK``) over NCCL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import FlashConfig
    from .progress import Reporter

# How long a finished process waits for the slowest one at a collective. Round-robin shares differ by at most
# one item, but one item of a large model can take many minutes; NCCL's own default (10 min) is too short.
WAIT = timedelta(hours=4)


@dataclass(frozen=True)
class Shard:
    """This process's place in a launch: ``index`` of ``count`` processes (0 of 1 without a launch)."""

    index: int = 0
    count: int = 1
    device: str | None = None  # the launch's device for this process (None: keep runtime.device)

    @property
    def main(self) -> bool:
        return self.index == 0

    @property
    def label(self) -> str:
        return f"process {self.index + 1}/{self.count}"

    def take(self, n: int) -> list[int]:
        """The indices of ``n`` items this process handles: index, index + count, ..."""
        return list(range(self.index, n, self.count))

    def configure(self, config: FlashConfig) -> FlashConfig:
        """``config`` with ``runtime.device`` set to this process's device (one GPU per process)."""
        if self.device is None or self.device == config.runtime.device:
            return config
        return config.model_copy(update={"runtime": config.runtime.model_copy(update={"device": self.device})})

    def broadcast(self, value: Any) -> Any:
        """The main process's ``value``, in every process (``value`` elsewhere is ignored)."""
        if self.count == 1:
            return value
        import torch.distributed as dist

        box = [value if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any] | None:
        """On the main process every process's ``value`` in process order; None in the others."""
        if self.count == 1:
            return [value]
        import torch.distributed as dist

        values: list[Any] | None = [None] * self.count if self.main else None
        dist.gather_object(value, values, dst=0)
        return values

    def reporter(self, reporter: Reporter) -> Reporter:
        """The main process reports as given; the others show no progress and label their notes."""
        if self.count == 1 or isinstance(reporter, ShardReporter):
            return reporter
        return ShardReporter(reporter, self)


class ShardReporter:
    """Progress on the main process only (its bar counts its own share); notes from every process,
    the other processes' prefixed with ``[process K/P]``."""

    def __init__(self, inner: Reporter, shard: Shard) -> None:
        self.inner, self.shard = inner, shard

    def start(self, task: str, total: int | None = None) -> None:
        if self.shard.main:
            self.inner.start(f"{task}, {self.shard.label}", total)

    def advance(self, n: int = 1, **metrics: float) -> None:
        if self.shard.main:
            self.inner.advance(n, **metrics)

    def finish(self) -> None:
        if self.shard.main:
            self.inner.finish()

    def note(self, text: str, level: str = "info") -> None:
        self.inner.note(text if self.shard.main else f"[{self.shard.label}] {text}", level)


_current: Shard | None = None


def launched() -> bool:
    """Whether this process is one of several started by ``accelerate launch`` / torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def current_shard(config: FlashConfig) -> Shard:
    """This process's shard; under a launch the first call joins accelerate's process group.

    ``config.runtime.device`` decides the backend: ``cpu`` -> gloo on the CPU, else one GPU per process.
    """
    global _current
    if _current is not None:
        return _current
    if not launched():
        return Shard()
    from accelerate import PartialState

    state = PartialState(cpu=config.runtime.device == "cpu", timeout=WAIT)
    _current = Shard(state.process_index, state.num_processes, str(state.device))
    return _current
