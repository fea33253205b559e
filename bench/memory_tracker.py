"""Counting training memory exactly on any device: live tensor bytes per phase of ``flashctl train``.

:class:`LiveBytes` is a ``TorchDispatchMode`` that sees the output of every tensor operation (forward,
backward, recomputation, optimizer) and keeps a weak reference to each output's storage: ``current`` is the
bytes of those storages still alive, ``peak`` the most there were. It does not see memory an operation uses
only inside itself (kernel workspaces), nor tensors made outside it; parameters are counted separately
(:func:`static_bytes`). :class:`PhaseReporter` is a flashctl ``Reporter`` that splits train's run at its
"phase N/M" notes and records, per phase, the peak of live bytes above their level when it began, the CUDA
allocator's peak (``torch.cuda.max_memory_allocated``) and the process's peak RSS so far.
"""

from __future__ import annotations

import resource
import time
import weakref
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from flashctl.progress import NullReporter


class LiveBytes(TorchDispatchMode):
    """Bytes of live storages made by tensor operations while the mode is on (``current``, ``peak``)."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, weakref.ref] = {}
        self.current = self.peak = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        inputs = {_address(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for leaf in tree_leaves(out):  # a view or an in-place result shares an input's storage: not new memory
            if isinstance(leaf, torch.Tensor) and leaf.device.type != "meta" and _address(leaf) not in inputs:
                self._track(leaf.untyped_storage())
        return out

    def _track(self, storage: Any) -> None:
        key = id(storage)
        if key in self.live:
            return
        size = storage.nbytes()

        def freed(_ref: Any, key: int = key, size: int = size) -> None:
            self.live.pop(key, None)
            self.current -= size

        self.live[key] = weakref.ref(storage, freed)
        self.current += size
        self.peak = max(self.peak, self.current)

    def reset_peak(self) -> None:
        self.peak = self.current


def _address(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr() if tensor.device.type != "meta" else -1


def static_bytes(modules: dict[str, torch.nn.Module]) -> dict[str, int]:
    """Bytes of the parameters and buffers of ``modules`` (each storage once), by dtype, plus ``total``."""
    seen, by_dtype = set(), {}
    for module in modules.values():
        for tensor in [*module.parameters(), *module.buffers()]:
            storage = tensor.untyped_storage()
            if storage.data_ptr() in seen or tensor.device.type == "meta":
                continue
            seen.add(storage.data_ptr())
            key = str(tensor.dtype).removeprefix("torch.")
            by_dtype[key] = by_dtype.get(key, 0) + storage.nbytes()
    return {**by_dtype, "total": sum(by_dtype.values())}


def peak_rss_bytes() -> int:
    """The process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PhaseReporter(NullReporter):
    """A flashctl Reporter recording memory per phase of ``train`` (split at its "phase N/M: ..." notes)."""

    def __init__(self, tracker: LiveBytes, device: str) -> None:
        self.tracker, self.cuda = tracker, device.startswith("cuda")
        self.phases: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self._begin("setup (load, encode, add the motion)")

    def _begin(self, name: str) -> None:
        self._end()
        self.tracker.reset_peak()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.phases.append({"phase": name, "start_live": self.tracker.current, "t0": time.perf_counter(),
                            "cuda_start": torch.cuda.memory_allocated() if self.cuda else None})

    def _end(self) -> None:
        if not self.phases or "seconds" in self.phases[-1]:
            return
        phase = self.phases[-1]
        if self.cuda:
            torch.cuda.synchronize()
            phase["cuda_peak"] = torch.cuda.max_memory_allocated()
        phase["above_start"] = self.tracker.peak - phase["start_live"]
        phase["peak_rss"] = peak_rss_bytes()
        phase["seconds"] = round(time.perf_counter() - phase.pop("t0"), 2)

    def close(self) -> list[dict[str, Any]]:
        self._end()
        return self.phases

    def note(self, text: str, level: str = "info") -> None:
        self.notes.append(text)
        if text.startswith("phase "):
            self._begin(text.split(":", 1)[1].strip().split(" (")[0])
