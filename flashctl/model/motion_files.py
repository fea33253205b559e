"""A motion's files on disk (``weights/``), read and written by :class:`~flashctl.model.motion_model.MotionModel`.

``weights/config.json`` says exactly how to rebuild the modules (format version, backbone name,
resolved options, geometry, clip geometry, LoRA config, objective); ``weights/lora.safetensors``
holds the LoRA tensors only; ``weights/decoder.safetensors`` the fitted decoder layers, if any.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import IncompatibleMotionError, WeightsFileError, WeightsNotFoundError
from ..files import atomic_path, sha256_file

CONFIG_FILE = "config.json"
LORA_FILE = "lora.safetensors"
DECODER_FILE = "decoder.safetensors"
FORMAT = 1  # weights/config.json layout; a newer one is refused, an older one needs a retrain
# what a motion's LoRA depends on; any difference means it cannot be loaded
GEOMETRY_KEYS = ("backbone", "preset", "base", "base_config_sha256", "latent_channels", "downsample", "target")
DIFFUSERS_PREFIX = "unet."  # where diffusers pipelines' load_lora_weights looks for U-Net LoRA keys


def _describe(geometry: dict[str, Any]) -> str:
    return ", ".join(f"{k}={geometry.get(k)}" for k in GEOMETRY_KEYS)


def check_compatible(action: str, saved: dict[str, Any], active: dict[str, Any]) -> None:
    """Raise :class:`IncompatibleMotionError` naming both sides when the geometries differ."""
    theirs = saved.get("backbone", {}).get("geometry", {})
    differ = [k for k in GEOMETRY_KEYS if theirs.get(k) != active.get(k)]
    if differ:
        raise IncompatibleMotionError(
            f"motion '{action}' was trained for [{_describe(theirs)}] but the config uses [{_describe(active)}] "
            f"(differs in {', '.join(differ)})",
            hint=f"switch model.backbone / [options.backbone.*] back to the motion's settings, "
                 f"or retrain it: flashctl train {action}")


def check_format(action: str, record: dict[str, Any], path: Path) -> None:
    """Refuse a ``config.json`` from a newer flashctl, or one older than format 1, in one line naming ``path``."""
    found = record.get("format")
    if found == FORMAT:
        return
    if isinstance(found, int) and found > FORMAT:
        raise WeightsFileError(f"{path} has weights format {found}; this flashctl ({__version__}) reads format {FORMAT}",
                               hint="upgrade flashctl to animate this motion")
    raise WeightsFileError(f"{path} has weights format {found!r}; this flashctl reads format {FORMAT}",
                           hint=f"retrain the motion: flashctl train {action}")


def save_lora(path: Path, tensors: dict[str, Any], metadata: dict[str, str]) -> None:
    """Write LoRA tensors (all finite, else :class:`WeightsFileError`) as safetensors."""
    from safetensors.torch import save_file

    from .modules import require_finite

    require_finite(tensors, path, saving=True)
    save_file(tensors, str(path), metadata=metadata)


def load_lora(path: Path) -> dict[str, Any]:
    """Read LoRA tensors; an unreadable file or one holding NaN/inf is a :class:`WeightsFileError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .modules import require_finite

    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise WeightsFileError(f"motion weights {path} are unreadable: {exc}",
                               hint="retrain the motion to rewrite them (older versions are in its .versions/ folder)") from None
    require_finite(tensors, path, saving=False)
    return tensors


def export_lora_for_diffusers(weights_dir: Path, out_path: Path) -> Path:
    """Write a motion's LoRA so that stock diffusers loads it: ``AnimateDiffPipeline.load_lora_weights(out_path)``.

    Keys get the ``unet.`` prefix. diffusers infers ``lora_alpha = rank`` from such a file, so the
    B matrices carry the motion's ``alpha / rank`` scale instead. The same base U-Net needs the same
    attention processors (flashctl's cross-frame attention) to give flashctl's output.
    """
    weights_dir = Path(weights_dir)
    config_path = weights_dir / CONFIG_FILE
    if not config_path.is_file():
        raise WeightsNotFoundError(f"{config_path} not found: {weights_dir} is not a trained motion's weights folder",
                                   hint="pass motions/ACTION/weights of a trained motion (flashctl train ACTION)")
    lora = json.loads(config_path.read_text())["lora"]
    scale = float(lora["alpha"]) / int(lora["rank"])
    state = load_lora(weights_dir / lora.get("file", LORA_FILE))
    tensors = {DIFFUSERS_PREFIX + k: v * scale if ".lora_B." in k else v for k, v in state.items()}
    with atomic_path(Path(out_path)) as tmp:
        save_lora(tmp, tensors, {"format": "pt", "exported_by": f"flashctl {__version__}",
                                 "rank": str(lora["rank"]), "alpha": str(lora["rank"]),
                                 "lora_B_scaled_by": str(scale)})
    return Path(out_path)


def file_hashes(root: Path) -> dict[str, str]:
    """Relative POSIX path -> sha256 for every file under ``root``."""
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
