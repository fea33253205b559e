"""Gradient checkpointing of chosen sub-modules, for the blocks diffusers' own checkpointing skips.

``unet.enable_gradient_checkpointing()`` re-runs each block's resnets (and spatial transformer blocks) in
backward, but not AnimateDiff's motion modules or SVD's temporal transformer blocks, which is where the
motion LoRA trains: their activations stay saved for the whole step. :func:`checkpoint_modules` wraps the
modules whose names match a backbone's ``checkpoint_modules`` pattern so that they, too, keep only their
inputs and recompute the rest in backward (``torch.utils.checkpoint``, non-reentrant: keyword arguments and
parameters that need gradients, such as LoRA's, are handled). Same loss and gradients, less memory.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

WRAPPED = "_flashctl_checkpointed"  # marks a module whose forward is wrapped (so wrapping twice is a no-op)


def _checkpointed(forward: Any) -> Any:
    @functools.wraps(forward)
    def run(*args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled():  # inference: nothing to save, nothing to recompute
            return forward(*args, **kwargs)
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    return run


def checkpoint_modules(root: torch.nn.Module, pattern: str | None) -> list[str]:
    """Checkpoint every sub-module of ``root`` whose name fully matches ``pattern``; returns their names.

    ``None`` wraps nothing. A wrapped module keeps its parameters, state_dict keys and hooks; diffusers'
    checkpointing inside it is switched off (the whole module is recomputed once, not its blocks twice).
    """
    if not pattern:
        return []
    regex = re.compile(pattern)
    names = []
    for name, module in root.named_modules():
        if regex.fullmatch(name) and not getattr(module, WRAPPED, False):
            module.forward = _checkpointed(module.forward)  # an instance attribute: nn.Module.__call__ uses it
            setattr(module, WRAPPED, True)
            names.append(name)
            for inner in module.modules():  # diffusers' own checkpointing inside would recompute twice
                if getattr(inner, "gradient_checkpointing", False):
                    inner.gradient_checkpointing = False
    return names


def uncheckpoint_modules(root: torch.nn.Module) -> int:
    """Undo :func:`checkpoint_modules` on every sub-module of ``root``; returns how many were unwrapped."""
    count = 0
    for module in root.modules():
        if getattr(module, WRAPPED, False):
            del module.forward  # back to the class's forward
            delattr(module, WRAPPED)
            count += 1
    return count
