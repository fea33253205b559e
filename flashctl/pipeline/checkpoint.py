"""Training checkpoints: everything that decides the next steps, so ``train --resume`` continues bit-exactly.

A checkpoint is one folder (train's: ``<action>/.cache/checkpoint/``; a backbone plugin's pretraining
recipe keeps one per stage), replaced atomically as a unit. safetensors and JSON only, never pickle:

* ``lora.safetensors``: the trained tensors: the motion LoRA (pretraining: the whole module's state dict);
* ``optimizer.safetensors``: the optimizer state's tensors (AdamW's ``exp_avg``, ``exp_avg_sq`` and
  ``step`` per parameter); the rest of its state dict (param groups, hyper-parameters) is JSON in
  ``state.json`` with ``{"tensor": KEY}`` where a tensor was;
* ``rng.safetensors``: the random states, one row per process ``(P, n)`` uint8: ``generator``
  (train's ``torch.Generator``: clips, augmentations, noise, timesteps), ``torch`` (torch's global
  CPU generator; nothing in the built-in loop draws from it, plugins' dropout could) and ``cuda``
  on a CUDA device; empty for a loop whose every draw is seeded by its step;
* ``state.json``: format, step, losses, seconds trained, the LR scheduler's and the grad scaler's
  state dicts, and the fingerprint of everything else the trajectory depends on (settings, clips,
  process count).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, short_value
from ..files import atomic_path, atomic_write

FORMAT = 1
STATE, LORA, OPTIMIZER, RNG = "state.json", "lora.safetensors", "optimizer.safetensors", "rng.safetensors"
TENSOR = "tensor"  # JSON placeholder {"tensor": key} for a tensor stored in safetensors


@dataclass
class Checkpoint:
    step: int
    losses: list[float]
    fingerprint: dict[str, Any]  # JSON data; a resume must present the same
    lora: dict[str, Any]  # name -> tensor: the trained tensors (a motion LoRA, or a pretrained module's state dict)
    optimizer: dict[str, Any]  # torch optimizer state dict
    scheduler: dict[str, Any] = field(default_factory=dict)  # LR scheduler state dict (JSON data); {}: none
    rng: dict[str, Any] = field(default_factory=dict)  # "generator" / "torch" / "cuda" -> (P, n) uint8, row = process
    scaler: dict[str, Any] | None = None  # mixed-precision grad scaler state dict, when there is one
    seconds: float = 0.0  # time spent training so far, for a provenance record


def _split(tree: Any, key: str, tensors: dict[str, Any]) -> Any:
    """JSON data with a ``{"tensor": key}`` placeholder for each tensor, which goes into ``tensors``."""
    import torch

    if isinstance(tree, torch.Tensor):
        tensors[key] = tree.detach().cpu().contiguous()
        return {TENSOR: key}
    if isinstance(tree, dict):
        return {str(k): _split(v, f"{key}.{k}", tensors) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_split(v, f"{key}.{i}", tensors) for i, v in enumerate(tree)]
    return tree


def _join(tree: Any, tensors: dict[str, Any]) -> Any:
    """Undo :func:`_split`; all-digit keys become ints again (a torch optimizer's per-parameter state)."""
    if isinstance(tree, dict):
        if set(tree) == {TENSOR}:
            return tensors[tree[TENSOR]]
        return {int(k) if k.isdigit() else k: _join(v, tensors) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_join(v, tensors) for v in tree]
    return tree


def save_checkpoint(folder: Path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` to ``folder``, replacing the previous one only once the new one is complete."""
    from safetensors.torch import save_file

    optimizer_tensors: dict[str, Any] = {}
    state = {"format": FORMAT, "step": checkpoint.step, "losses": checkpoint.losses, "seconds": checkpoint.seconds,
             "fingerprint": checkpoint.fingerprint, "scheduler": checkpoint.scheduler, "scaler": checkpoint.scaler,
             "optimizer": _split(checkpoint.optimizer, "optimizer", optimizer_tensors)}
    with atomic_path(Path(folder)) as tmp:
        tmp.mkdir()
        save_file({k: v.contiguous() for k, v in checkpoint.lora.items()}, str(tmp / LORA))
        save_file(optimizer_tensors, str(tmp / OPTIMIZER))
        save_file({k: v.contiguous() for k, v in checkpoint.rng.items()}, str(tmp / RNG))
        atomic_write(tmp / STATE, json.dumps(state, indent=1))
    return Path(folder)


def load_checkpoint(folder: Path, hint: str | None = None) -> Checkpoint | None:
    """The checkpoint in ``folder``; None when there is none. Unreadable files raise :class:`CheckpointError`.

    ``hint``: how to start over instead (default: train's).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / STATE).is_file():
        return None
    hint = hint or f"delete {folder} or drop --resume to train from step 0"
    try:
        state = json.loads((folder / STATE).read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{folder / STATE}: unreadable checkpoint state ({exc})", hint=hint) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{folder / STATE}: checkpoint format {found!r}, this flashctl reads {FORMAT}",
                              hint=hint)
    tensors = {}
    for name in (LORA, OPTIMIZER, RNG):
        try:
            tensors[name] = load_file(str(folder / name))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{folder / name}: unreadable checkpoint file ({exc})", hint=hint) from None
    try:
        return Checkpoint(step=int(state["step"]), losses=[float(x) for x in state["losses"]],
                          fingerprint=state["fingerprint"], lora=tensors[LORA],
                          optimizer=_join(state["optimizer"], tensors[OPTIMIZER]), scheduler=state["scheduler"],
                          rng=tensors[RNG], scaler=state.get("scaler"), seconds=float(state.get("seconds", 0.0)))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{folder / STATE}: incomplete checkpoint state ({type(exc).__name__}: {exc})",
                              hint=hint) from None


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> ``{"a.b": leaf}``; lists are leaves."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    return {k: v for key, sub in tree.items() for k, v in _flat(sub, f"{prefix}.{key}" if prefix else key).items()}


def check_fingerprint(folder: Path, saved: dict[str, Any], current: dict[str, Any], hint: str | None = None) -> None:
    """Raise :class:`CheckpointError` naming the first setting that differs (and how many more do).

    ``hint``: how to go on (default: train's).
    """
    old, new = _flat(saved), _flat(json.loads(json.dumps(current)))  # compare as JSON data, as saved
    changed = [k for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)]
    if not changed:
        return
    first = changed[0]
    more = f" (and {len(changed) - 1} more: {', '.join(changed[1:4])}{', ...' if len(changed) > 4 else ''})" \
        if len(changed) > 1 else ""
    raise CheckpointError(f"checkpoint in {folder} was made with {first} = {short_value(old.get(first))}, "
                          f"now {short_value(new.get(first))}{more}",
                          hint=hint or "rerun with the checkpoint's settings, clips and process count, or drop "
                                       "--resume to train from step 0 (the checkpoint is then replaced)")


def clear_checkpoint(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
