"""Train's resumable state: every process's random states, the LoRA, optimizer and schedule, saved in
:mod:`.checkpoint`'s format and loaded back bit-exactly (``--resume``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from .checkpoint import Checkpoint, check_fingerprint, load_checkpoint, save_checkpoint

CHECKPOINT = "checkpoint"


def checkpoint_dir(library: Any, action: str) -> Path:
    return Path(library.cache_dir(action)) / CHECKPOINT


def rng_states(accelerator: Any, generator: Any) -> dict[str, Any]:
    """Every process's random states, name -> ``(P, n)`` uint8 by process index (a collective)."""
    import torch

    states = {"generator": generator.get_state(), "torch": torch.get_rng_state()}
    if accelerator.device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(accelerator.device)
    return {name: accelerator.gather(state[None].to(accelerator.device)).cpu() for name, state in states.items()}


def save_state(folder, accelerator, backbone, optimizer, schedule, generator, step, losses, fingerprint) -> None:
    """Everything the next steps depend on (see :mod:`.checkpoint`); every process calls it, the main one writes."""
    from ..model.lora import lora_state_dict

    rng = rng_states(accelerator, generator)
    if accelerator.is_main_process:
        scaler = accelerator.scaler.state_dict() if accelerator.scaler is not None else None
        save_checkpoint(folder, Checkpoint(step, list(losses), fingerprint, lora_state_dict(backbone),
                                           optimizer.state_dict(), schedule.state_dict(), rng, scaler))


def resume_state(folder, fingerprint, total, accelerator, backbone, optimizer, schedule, generator, reporter,
            action) -> tuple[int, list[float]]:
    """Load ``folder``'s checkpoint into the LoRA, optimizer, scheduler and random states -> (step, losses)."""
    import torch
    from peft import set_peft_model_state_dict

    from ..model.lora import ADAPTER

    saved = load_checkpoint(folder)
    if saved is None:
        reporter.note(f"no checkpoint for '{action}' in {folder}; starting from step 0", level="warning")
        return 0, []
    check_fingerprint(folder, saved.fingerprint, fingerprint)
    if saved.step >= total:
        raise CheckpointError(f"checkpoint in {folder} is at step {saved.step}, but training stops at step {total}",
                              hint=f"pass --steps greater than {saved.step}, or drop --resume to train from step 0")
    set_peft_model_state_dict(backbone.unet, saved.lora, adapter_name=ADAPTER)
    optimizer.load_state_dict(saved.optimizer)
    schedule.load_state_dict(saved.scheduler)
    if saved.scaler is not None:
        accelerator.scaler.load_state_dict(saved.scaler)
    rank = accelerator.process_index  # clone(): set_state of a row view (storage offset > 0) crashes torch
    generator.set_state(saved.rng["generator"][rank].clone())
    torch.set_rng_state(saved.rng["torch"][rank].clone())
    if "cuda" in saved.rng:
        torch.cuda.set_rng_state(saved.rng["cuda"][rank].clone(), accelerator.device)
    reporter.note(f"resuming '{action}' from step {saved.step}")
    return saved.step, list(saved.losses)
