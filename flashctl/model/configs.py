"""Model configs as plain data, for geometry hashes that survive save/load round trips."""

from __future__ import annotations

from typing import Any

# transformers bookkeeping that save/load or an upgrade changes, not the architecture
VOLATILE_KEYS = {"architectures", "dtype", "transformers_version"}


def public_config(config: Any) -> dict[str, Any]:
    """A diffusers/transformers config without private (``_``) and volatile keys."""
    items = config.to_dict().items() if hasattr(config, "to_dict") else dict(config).items()
    return {k: v for k, v in items if not k.startswith("_") and k not in VOLATILE_KEYS}


def geometry_record(name: str, preset: str, base_id: str, configs: dict[str, Any], vae_config: Any,
                    content: dict[str, str | None] | None = None) -> dict[str, Any]:
    """What a motion's weights depend on: backbone, preset, base weights id + hash of their configs, latents,
    and the content ids (:mod:`.content_id`) of the base and adapter weights when they come from files."""
    import hashlib
    import json

    digest = hashlib.sha256(json.dumps(configs, sort_keys=True, default=list).encode()).hexdigest()
    return {
        "backbone": name,
        "preset": preset,
        "base": base_id,
        "base_config_sha256": digest,
        **latent_geometry(vae_config),
        **{k: v for k, v in (content or {}).items() if v},
    }


def latent_geometry(vae_config: Any) -> dict[str, int]:
    """``latent_channels`` and ``downsample`` of a VAE config (a model's config, or a ``vae/config.json`` read as a
    dict: diffusers' defaults, 4 channels and one block, fill what the file leaves out)."""
    get = vae_config.get if isinstance(vae_config, dict) else lambda k, d: getattr(vae_config, k, d)
    return {"latent_channels": int(get("latent_channels", 4)),
            "downsample": 2 ** (len(get("block_out_channels", (64,))) - 1)}
