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
from ..errors import IncompatibleMotionError, WeightsFileError, WeightsNotFoundError
from ..library import atomic_path, sha256_file
from ..model.interfaces import Backbone, Decoder

CONFIG_FILE = "config.json"
LORA_FILE = "lora.safetensors"
DECODER_FILE = "decoder.safetensors"
FORMAT = 1
# what a motion's LoRA depends on; any difference means it cannot be loaded
GEOMETRY_KEYS = ("backbone", "preset", "base", "base_config_sha256", "latent_channels", "downsample", "target")
DIFFUSERS_PREFIX = "unet."  # where diffusers pipelines' load_lora_weights looks for U-Net LoRA keys


@dataclass
class Model:
    backbone: Backbone
    decoder: Decoder
    backbone_options: dict[str, Any]
    decoder_options: dict[str, Any]


def build_model(config: Any, host: Any, ctx: BuildContext, *, training: bool = False) -> Model:
    """The configured backbone with ``[runtime]`` applied, and the decoder, attached (its weights are the caller's).

    ``training``: build for ``train`` (inference-only switches such as ``runtime.cpu_offload`` stay off).
    """
    from ..model.runtime import apply_runtime

    registry, m = host.registry, config.model
    raw_b, raw_d = config.component_options("backbone", m.backbone), config.component_options("decoder", m.decoder)
    backbone = registry.create("backbone", m.backbone, raw_b, ctx, where="model.backbone")
    apply_runtime(backbone, config.runtime, training=training, reporter=ctx.reporter)
    decoder = registry.create("decoder", m.decoder, raw_d, ctx, where="model.decoder")
    decoder.attach(backbone)
    resolved = [registry.get(kind, name).validate_options(raw, f"options.{kind}.{name}").model_dump(mode="json")
                for kind, name, raw in (("backbone", m.backbone, raw_b), ("decoder", m.decoder, raw_d))]
    return Model(backbone, decoder, *resolved)


def motion_config(model: Model, config: Any, *, action: str, prompt: str, frames: int, size: int, fps: float,
                  lora_rank: int, lora_alpha: float, lora_targets: list[str], decoder_fitted: bool) -> dict[str, Any]:
    """The content of ``weights/config.json``. ``decoder_fitted``: ``weights/decoder.safetensors`` exists."""
    return {
        "format": FORMAT,
        "flashctl_version": __version__,
        "action": action,
        "prompt": prompt,
        "backbone": {"name": config.model.backbone, "options": model.backbone_options,
                     "geometry": model.backbone.geometry()},
        "decoder": {"name": config.model.decoder, "options": model.decoder_options,
                    "file": DECODER_FILE if decoder_fitted else None},
        "frames": frames,
        "size": size,
        "fps": fps,
        "lora": {"file": LORA_FILE, "rank": lora_rank, "alpha": lora_alpha,
                 "targets": list(lora_targets)},
        "scheduler": model.backbone.objective.scheduler_config,
    }


def load_decoder_weights(model: Model, weights: dict[str, Any], weights_dir: Path, reporter: Any) -> None:
    """Load the motion's fitted decoder layers, if the active decoder has per-motion weights and the motion has them."""
    saved = weights.get("decoder") or {}
    if not model.decoder.has_weights:
        return
    if saved.get("name") != model.decoder.name or not saved.get("file"):
        reporter.note(f"motion has no fitted '{model.decoder.name}' weights (trained with decoder "
                      f"'{saved.get('name')}'); its untrained layers decode exactly like the stock VAE", level="info")
        return
    model.decoder.load(Path(weights_dir) / saved["file"])


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
    """Write LoRA tensors (all finite, else :class:`WeightsFileError`) as safetensors."""
    from safetensors.torch import save_file

    from ..model.modules import require_finite

    require_finite(tensors, path, saving=True)
    save_file(tensors, str(path), metadata=metadata)


def load_lora(path: Path) -> dict[str, Any]:
    """Read LoRA tensors; an unreadable file or one holding NaN/inf is a :class:`WeightsFileError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ..model.modules import require_finite

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
