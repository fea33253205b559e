"""Small helpers every backbone uses to set up its frozen pretrained modules."""

from __future__ import annotations

import torch


def freeze(modules: tuple[torch.nn.Module, ...], device: str, dtype: torch.dtype) -> None:
    """Frozen, eval mode, on ``device``; cast only when ``dtype`` is not float32 (the build dtype)."""
    for module in modules:
        module.requires_grad_(False).eval().to(device)
        if dtype != torch.float32:
            module.to(dtype=dtype)
