"""The real Wan presets: folders in the diffusers hub layout (Wan2.1-I2V-14B-*-Diffusers, Wan2.2-TI2V-5B-Diffusers).

A folder is resolved through the build context (a local folder; a hub id only when ``runtime.offline = false``),
its parts are checked before anything loads (each missing part is one line naming the folder and the part), and
its transformer must be the one the preset conditions for:

* ``wan2.1-i2v``: ``in_channels = 2 * z_dim + 4`` (noisy latents ++ 4 mask channels ++ the condition latents)
  and ``image_dim`` (the CLIP image tokens' width, cross-attended through ``added_kv_proj_dim``);
* ``wan2.2-ti2v``: ``in_channels = z_dim`` and no ``image_dim`` (first-frame latent conditioning).

The base is identified like the other backbones' folders: ``base`` = the reference text (folder or hub id) and
``base_content_id`` = :func:`flashctl.model.content_id.content_id` of the weight subfolders, so a moved or
symlinked copy is the same base and another checkpoint is not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flashctl.context import require_weights
from flashctl.errors import ConfigError, WeightsNotFoundError
from flashctl.model.content_id import content_id

from . import HUB_IDS, WAN21_I2V, WanOptions

MODELS = ("transformer", "vae", "text_encoder")  # subfolders holding weights (plus image_encoder for wan2.1-i2v)
CONFIG_FILES = {"transformer": "config.json", "vae": "config.json", "text_encoder": "config.json",
                "image_encoder": "config.json", "image_processor": "preprocessor_config.json",
                "tokenizer": "tokenizer_config.json"}


@dataclass(frozen=True)
class Folder:
    """A real preset's base folder, resolved and checked without loading any weights."""

    root: Path
    preset: str
    base_id: str  # the reference text: the folder or hub id the options name

    @property
    def models(self) -> tuple[str, ...]:
        return MODELS + (("image_encoder",) if self.preset == WAN21_I2V else ())

    def config(self, part: str) -> dict[str, Any]:
        return json.loads((self.root / part / CONFIG_FILES[part]).read_text())

    def content(self) -> dict[str, str | None]:
        """The base's content id (headers + sizes + tensor samples of every weight subfolder)."""
        return {"base_content_id": content_id([self.root / m for m in self.models], self.root)}

    def geometry(self) -> dict[str, Any]:
        """What the folder's files say of the latents: channels and spatial compression (the VAE's config)."""
        vae = self.config("vae")
        return {"latent_channels": int(vae["z_dim"]), "downsample": int(vae.get("scale_factor_spatial", 8))}


def subfolders(preset: str) -> tuple[str, ...]:
    image = ("image_encoder", "image_processor") if preset == WAN21_I2V else ()
    return ("transformer", "vae", "text_encoder", "tokenizer") + image


def resolve_folder(options: WanOptions, ctx: Any) -> Folder:
    """The folder ``options`` name, its parts present (configs, safetensors weights) and its transformer the
    preset's; one-line errors name the folder and the missing or wrong part."""
    ref = options.base or HUB_IDS[options.preset]
    parts = subfolders(options.preset)
    root = require_weights(ctx, ref, label=f"wan {options.preset}: base weights",
                           option_key="options.backbone.wan.base", subfolders=parts)
    for part in parts:
        if not (root / part / CONFIG_FILES[part]).is_file():
            raise WeightsNotFoundError(f"wan {options.preset}: {root / part} lacks {CONFIG_FILES[part]}",
                                       hint=f"copy the whole {part}/ folder of {HUB_IDS[options.preset]}")
    folder = Folder(root, options.preset, ref)
    for part in folder.models:
        if not any((root / part).glob("*.safetensors")):
            raise WeightsNotFoundError(f"wan {options.preset}: {root / part} holds no .safetensors weights",
                                       hint=f"copy the whole {part}/ folder of {HUB_IDS[options.preset]} "
                                            f"(flashctl loads .safetensors only)")
    _check_transformer(folder)
    return folder


def _check_transformer(folder: Folder) -> None:
    """Refuse a transformer that is not the one the preset conditions for."""
    t, z = folder.config("transformer"), int(folder.config("vae")["z_dim"])
    channels, image_dim = t.get("in_channels"), t.get("image_dim")
    if folder.preset == WAN21_I2V:
        fits, wants = channels == 2 * z + 4 and image_dim is not None, f"in_channels = {2 * z + 4} and an image_dim"
    else:
        fits, wants = channels == z and image_dim is None, f"in_channels = {z} and no image_dim"
    if not fits:
        other = next(p for p in HUB_IDS if p != folder.preset)
        raise ConfigError(f"wan {folder.preset}: {folder.root / 'transformer' / 'config.json'} has in_channels = "
                          f"{channels}, image_dim = {image_dim}; the preset needs {wants} (vae z_dim {z})",
                          hint=f"set options.backbone.wan.preset = \"{other}\" if this is a {HUB_IDS[other]} "
                               f"folder, or point options.backbone.wan.base at a {HUB_IDS[folder.preset]} folder")
