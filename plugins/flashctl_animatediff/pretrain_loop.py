"""Pretraining's shared step loop (:mod:`.pretrain`), checkpointed in flashctl's one format.

Each stage checkpoints its module's whole state dict and its AdamW state to ``OUT/checkpoints/<stage>/``
through :mod:`flashctl.pipeline.checkpoint`, fingerprinted by :data:`RESUME_KEYS` of the settings. The
learning rate is a function of the step and every draw is seeded by ``(seed, step)``, so the checkpoint
holds no scheduler and no random state.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flashctl.errors import FlashctlError, TrainingDivergedError
from flashctl.pipeline.checkpoint import STATE, Checkpoint, check_fingerprint, load_checkpoint, save_checkpoint
from flashctl.progress import Reporter

if TYPE_CHECKING:
    from .pretrain import PretrainSettings

CHECKPOINTS, LOG = "checkpoints", "train.log"
RESUME_KEYS = ("frames", "size", "actions", "seed", "target", "prediction_type", "vae_channels", "channels")


@dataclass
class Run:
    """One stage's training state besides the tensors."""

    step: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)


def checkpoint_dir(s: PretrainSettings, stage: str) -> Path:
    return Path(s.out) / CHECKPOINTS / stage


def saved_stage(s: PretrainSettings, stage: str) -> Checkpoint | None:
    """``stage``'s latest checkpoint; None when it never ran."""
    folder = checkpoint_dir(s, stage)
    return load_checkpoint(folder, hint=f"delete {folder} to train the stage from step 0, or choose another --out")


def loop(name: str, s: PretrainSettings, module: Any, optimizer: Any, lr: float, total: int,
         loss_at: Callable[[int], Any], show: Callable[[int], None], reporter: Reporter) -> Run:
    """Steps ``run.step .. total - 1``: warm-up then constant ``lr``, grad-norm clip 1, checkpoints, samples; a
    stage's ``<name>_minutes`` budget (settings) ends it early, after the step that passes it, checkpointed."""
    import torch

    folder = checkpoint_dir(s, name)
    run = _start(folder, name, s, module, optimizer, reporter)
    reporter.start(f"pretrain {name}", total)
    reporter.advance(run.step)
    saved, shown = run.step, run.step
    minutes = getattr(s, f"{name}_minutes", None)
    deadline = None if minutes is None else time.monotonic() + 60 * minutes
    try:
        while run.step < total:
            began = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = lr * min(1.0, (run.step + 1) / s.warmup)
            loss = loss_at(run.step)
            if not math.isfinite(loss.item()):
                raise TrainingDivergedError(
                    f"pretrain {name} diverged at step {run.step + 1}: loss is {loss.item()}",
                    hint=f"lower the learning rate; --resume restarts from the checkpoint at step {saved}")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            elapsed = time.perf_counter() - began
            run.step, run.seconds = run.step + 1, run.seconds + elapsed
            run.losses.append(round(loss.item(), 6))
            reporter.advance(1, loss=loss.item(), s_per_step=elapsed)
            log(s, f"{name} step {run.step} loss {loss.item():.5f} s/step {elapsed:.2f}")
            if run.step % s.checkpoint_every == 0 or run.step == total:
                _save(folder, s, module, optimizer, run)
                saved = run.step
            if run.step % s.sample_every == 0 or run.step == total:
                show(run.step)
                shown = run.step
            if deadline is not None and time.monotonic() > deadline and run.step < total:
                reporter.note(f"{name}: {minutes:g} minutes spent, stopping at step {run.step} of {total} "
                              f"(--resume with more minutes goes on)", level="warning")
                if run.step > saved:
                    _save(folder, s, module, optimizer, run)
                if run.step > shown:
                    show(run.step)
                break
    except KeyboardInterrupt:
        if run.step > saved:
            _save(folder, s, module, optimizer, run)
        reporter.note(f"interrupted: checkpoint at step {run.step} in {folder}; continue with --resume",
                      level="warning")
        raise
    finally:
        reporter.finish()
    return run


def _fingerprint(s: PretrainSettings) -> dict[str, Any]:
    record = s.record()
    return {k: record[k] for k in RESUME_KEYS}


def _start(folder: Path, name: str, s: PretrainSettings, module: Any, optimizer: Any, reporter: Reporter) -> Run:
    if not s.resume:
        if (folder / STATE).exists():
            raise FlashctlError(f"pretrain: {folder} already holds a '{name}' checkpoint",
                                hint="pass --resume to continue it, or choose another --out")
        return Run()
    saved = saved_stage(s, name)
    if saved is None:
        return Run()
    check_fingerprint(folder, saved.fingerprint, _fingerprint(s),
                      hint=f"resume with the checkpoint's {', '.join(RESUME_KEYS)}, or choose another --out")
    module.load_state_dict(saved.lora)
    optimizer.load_state_dict(saved.optimizer)
    reporter.note(f"resuming '{name}' from step {saved.step}")
    return Run(step=saved.step, seconds=saved.seconds, losses=saved.losses)


def _save(folder: Path, s: PretrainSettings, module: Any, optimizer: Any, run: Run) -> None:
    save_checkpoint(folder, Checkpoint(run.step, list(run.losses), _fingerprint(s), module.state_dict(),
                                       optimizer.state_dict(), seconds=run.seconds))


def log(s: PretrainSettings, line: str) -> None:
    with open(Path(s.out) / LOG, "a") as fh:
        fh.write(f"{datetime.now().isoformat(timespec='seconds')} {line}\n")
