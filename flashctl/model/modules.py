"""Small helpers for model modules: freezing pretrained ones, refusing non-finite weights."""

from __future__ import annotations

import torch

from ..errors import WeightsFileError


def freeze(modules: tuple[torch.nn.Module, ...], device: str, dtype: torch.dtype) -> None:
    """Frozen, eval mode, on ``device``; cast only when ``dtype`` is not float32 (the build dtype)."""
    for module in modules:
        module.requires_grad_(False).eval().to(device)
        if dtype != torch.float32:
            module.to(dtype=dtype)


def require_finite(tensors: dict[str, torch.Tensor], path: object, *, saving: bool) -> None:
    """Refuse weights holding NaN or inf (a diverged run, a corrupt file): the error names the file and tensor."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            if saving:
                raise WeightsFileError(f"refusing to write {path}: tensor {name!r} has {bad} NaN/inf values",
                                       hint="training diverged: lower train.lr or set train.mixed_precision = "
                                            "\"no\" and train again; the saved motion was not touched")
            raise WeightsFileError(f"{path}: tensor {name!r} has {bad} NaN/inf values",
                                   hint="the file is corrupt or came from a diverged run: train the motion again "
                                        "(older versions are in its .versions/ folder)")
