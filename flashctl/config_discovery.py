"""Which config file a command reads, first found wins (as ruff does): ``--config PATH``, then
``$FLASHCTL_CONFIG``, then the nearest ``flashctl.toml`` in the current folder or any folder above it,
then the user-level ``flashctl.toml`` (:func:`user_config_path`), then none (the built-in defaults)."""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_NAME = "flashctl.toml"
CONFIG_ENV = "FLASHCTL_CONFIG"


def user_config_path() -> Path:
    """The user-level config: platformdirs' user config folder when installed, else XDG's.

    Without platformdirs: ``$XDG_CONFIG_HOME/flashctl/flashctl.toml``, else ``~/.config/flashctl/flashctl.toml``.
    """
    try:
        import platformdirs
    except ImportError:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or "~/.config").expanduser()
        return base / "flashctl" / CONFIG_NAME
    return Path(platformdirs.user_config_dir("flashctl")) / CONFIG_NAME


def find_project_config(start: Path | None = None) -> Path | None:
    """The nearest ``flashctl.toml`` in ``start`` (default: the current folder) or any folder above it."""
    here = Path(start or Path.cwd()).absolute()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def discover_config(path: Path | str | None = None) -> tuple[Path | None, str]:
    """(config file or None, how it was found): --config, FLASHCTL_CONFIG, project, user or defaults."""
    if path is not None:
        return Path(path), "--config"
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]), CONFIG_ENV
    project = find_project_config()
    if project is not None:
        return project, "project"
    user = user_config_path()
    if user.is_file():
        return user, "user"
    return None, "defaults"
