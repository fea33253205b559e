"""Model configs as plain data, for geometry hashes that survive save/load round trips."""

from __future__ import annotations

from typing import Any

# transformers bookkeeping that save/load or an upgrade changes, not the architecture
VOLATILE_KEYS = {"architectures", "dtype", "transformers_version"}


def public_config(config: Any) -> dict[str, Any]:
    """A diffusers/transformers config without private (``_``) and volatile keys."""
    items = config.to_dict().items() if hasattr(config, "to_dict") else dict(config).items()
    return {k: v for k, v in items if not k.startswith("_") and k not in VOLATILE_KEYS}
