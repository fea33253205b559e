"""A motion's model files: building the configured backbone/decoder, and weights/ on disk.

``weights/config.json`` says exactly how to rebuild the modules (backbone name, resolved
options, geometry, clip geometry, LoRA config); ``weights/lora.safetensors`` holds the LoRA
tensors only. Train writes them, animate reads them and refuses a geometry mismatch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..context import BuildContext
from ..errors import IncompatibleMotionError
from ..library import sha256_file
from ..model.interfaces import Backbone, Decoder

CONFIG_FILE = "config.json"
LORA_FILE = "lora.safetensors"
FORMAT = 1
# what a motion's LoRA depends on; any difference means it cannot be loaded
GEOMETRY_KEYS = ("backbone", "preset", "base", "base_config_sha256", "latent_channels", "downsample")


@dataclass
class Model:
    backbone: Backbone
    decoder: Decoder
    backbone_options: dict[str, Any]
    decoder_options: dict[str, Any]


def build_model(config: Any, host: Any, ctx: BuildContext) -> Model:
    """The configured backbone and decoder, built and attached (decoder weights are the caller's)."""
    registry, m = host.registry, config.model
    raw_b, raw_d = config.component_options("backbone", m.backbone), config.component_options("decoder", m.decoder)
    backbone = registry.create("backbone", m.backbone, raw_b, ctx, where="model.backbone")
    decoder = registry.create("decoder", m.decoder, raw_d, ctx, where="model.decoder")
    decoder.attach(backbone)
    resolved = [registry.get(kind, name).validate_options(raw, f"options.{kind}.{name}").model_dump(mode="json")
                for kind, name, raw in (("backbone", m.backbone, raw_b), ("decoder", m.decoder, raw_d))]
    return Model(backbone, decoder, *resolved)


def motion_config(model: Model, config: Any, *, action: str, prompt: str, frames: int, size: int, fps: float,
                  lora_rank: int, lora_alpha: float) -> dict[str, Any]:
    """The content of ``weights/config.json``."""
    return {
        "format": FORMAT,
        "flashctl_version": __version__,
        "action": action,
        "prompt": prompt,
        "backbone": {"name": config.model.backbone, "options": model.backbone_options,
                     "geometry": model.backbone.geometry()},
        "decoder": {"name": config.model.decoder, "options": model.decoder_options},
        "frames": frames,
        "size": size,
        "fps": fps,
        "lora": {"file": LORA_FILE, "rank": lora_rank, "alpha": lora_alpha,
                 "targets": list(model.backbone.lora_targets)},
        "scheduler": model.backbone.scheduler_config,
    }


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


def save_lora(path: Path, tensors: dict[str, Any], metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=metadata)


def load_lora(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path))


def file_hashes(root: Path) -> dict[str, str]:
    """Relative POSIX path -> sha256 for every file under ``root``."""
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
