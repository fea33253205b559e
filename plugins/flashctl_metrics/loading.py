"""Finding and reading the local weights of the weight-based metrics (clip-score, lpips, fvd).

Safetensors only: a folder whose weights are all pickles (.bin, .pt, .pth, .ckpt, .pkl) is refused with
the conversion command, and only ``.safetensors`` files are read. Nothing here downloads: ``options.metric.<name>.weights`` names a local folder, resolved through the
build context's ``resolve_weights`` when there is one, else as a plain path. A missing folder, file
or tensor is an error at factory time, so ``flashctl eval`` stops before rendering anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flashctl.context import refuse_pickles
from flashctl.errors import WeightsFileError, WeightsNotFoundError


def option_key(metric: str) -> str:
    return f"options.metric.{metric}.weights"


def weights_folder(ref: str | None, ctx: Any, *, metric: str, layout: str) -> Path:
    """The local folder ``ref`` names; ``layout`` says what belongs in it (for the hint)."""
    key = option_key(metric)
    if not ref:
        raise WeightsNotFoundError(f"metric '{metric}' needs local weights but {key} is not set",
                                   hint=f"set {key} to a folder holding {layout}")
    folder = ctx.resolve_weights(ref) if ctx is not None else None
    if folder is None:
        path = Path(ref).expanduser()
        folder = path if path.is_dir() else None
    if folder is None:
        raise WeightsNotFoundError(f"metric '{metric}': weights folder '{ref}' ({key}) not found",
                                   hint=f"point {key} at a local folder holding {layout}; nothing is downloaded")
    refuse_pickles(Path(folder), f"metric '{metric}' ({key})")  # safetensors only: pickles are refused by name
    return Path(folder)


def weights_file(ref: str | None, ctx: Any, *, metric: str, filename: str, layout: str) -> Path:
    """``filename`` inside the folder ``ref`` names."""
    path = weights_folder(ref, ctx, metric=metric, layout=f"{filename} ({layout})") / filename
    if not path.is_file():
        raise WeightsNotFoundError(f"metric '{metric}': {path.parent} ({option_key(metric)}) has no {filename}",
                                   hint=f"save {layout} as {path} (safetensors)")
    return path


def read_tensors(path: Path) -> dict[str, Any]:
    """Every tensor of a safetensors file, on the CPU."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises several unrelated types for a bad file
        raise WeightsFileError(f"cannot read weights file {path}: {exc}",
                               hint="the file must be a safetensors file; convert .pth/.pt files first") from None


def take(tensors: dict[str, Any], name: str, path: Path, ndim: int) -> Any:
    """``tensors[name]``, which must exist and have ``ndim`` dimensions."""
    if name not in tensors:
        raise WeightsFileError(f"weights file {path} lacks tensor '{name}'",
                               hint="see the metric's module docstring for the expected tensor names")
    tensor = tensors[name]
    if tensor.ndim != ndim:
        raise WeightsFileError(f"weights file {path}: tensor '{name}' has shape {tuple(tensor.shape)}, "
                               f"expected {ndim} dimensions",
                               hint="see the metric's module docstring for the expected tensor shapes")
    return tensor


def device_of(ctx: Any) -> str:
    return getattr(ctx, "device", None) or "cpu"


def load_strict(model: Any, tensors: dict[str, Any], path: Path, layout: str, module: str) -> Any:
    """Load ``tensors`` into ``model`` exactly; a mismatch names the file and the expected ``layout``."""
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise WeightsFileError(f"weights file {path} does not fit the {layout} layout: {detail[:300]}",
                               hint=f"see {module} for the expected tensor names") from None
    return model.eval().requires_grad_(False)
