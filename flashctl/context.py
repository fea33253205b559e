"""What a component factory gets besides its options: device, dtype, weights lookup, progress.

Factories are called as ``factory(options, ctx)``; ``ctx`` is a :class:`BuildContext`. Tests build
one directly; the pipelines build it from the config and the plugin host with :func:`context_for`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .progress import NullReporter, Reporter


def _no_weights(ref: str) -> Path | None:
    """Default resolver: only an existing local folder counts."""
    path = Path(ref).expanduser()
    return path if path.is_dir() else None


@dataclass
class BuildContext:
    device: str = "cpu"
    dtype: str = "float32"  # "float32" | "bfloat16" | "float16"
    offline: bool = True
    resolve_weights: Callable[[str], Path | None] = _no_weights
    reporter: Reporter = field(default_factory=NullReporter)

    def torch_dtype(self) -> Any:
        import torch

        return getattr(torch, self.dtype)


def context_for(config: Any, host: Any, reporter: Reporter | None = None) -> BuildContext:
    """The build context for a :class:`~flashctl.config.FlashConfig` and its plugin host."""
    runtime = config.runtime

    def resolve(ref: str) -> Path | None:
        return host.pm.hook.resolve_weights(ref=ref, offline=runtime.offline)

    return BuildContext(device=runtime.device, dtype=runtime.dtype, offline=runtime.offline, resolve_weights=resolve,
                        reporter=reporter or NullReporter())


def require_weights(ctx: BuildContext, ref: str, *, label: str, option_key: str,
                    subfolders: tuple[str, ...] = ()) -> Path:
    """Resolve ``ref`` through ``ctx`` or raise WeightsNotFoundError saying which folder to provide."""
    from .errors import WeightsNotFoundError

    root = ctx.resolve_weights(ref)
    layout = f" with {', '.join(s + '/' for s in subfolders)}" if subfolders else ""
    if root is None:
        hint = (f"put a diffusers folder{layout} at {Path(ref).expanduser()} or download '{ref}' into the "
                f"Hugging Face cache and set {option_key}")
        if ctx.offline:
            hint += "; or set runtime.offline = false to download it"
        raise WeightsNotFoundError(f"{label}: '{ref}' not found locally", hint=hint)
    missing = [s for s in subfolders if not (root / s).is_dir()]
    if missing:
        raise WeightsNotFoundError(f"{label}: folder {root} lacks {', '.join(s + '/' for s in missing)}",
                                   hint=f"the folder needs the diffusers layout{layout}")
    for folder in [root, *(root / s for s in subfolders)]:
        refuse_pickles(folder, label)
    return root


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def refuse_pickles(folder: Path, label: str) -> None:
    """Weights load from safetensors only: a folder whose weights are all pickles is refused, naming one."""
    from .errors import WeightsFileError

    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles and not any(folder.glob("*.safetensors")):
        raise WeightsFileError(
            f"{label}: {folder / pickles[0]} is a pickle file; flashctl loads weights from .safetensors only",
            hint="convert it once where you trust the file: python -c \"import torch, safetensors.torch as s; "
                 "s.save_file(torch.load('IN.bin', weights_only=True), 'OUT.safetensors')\" (diffusers: "
                 "save_pretrained(..., safe_serialization=True))")
