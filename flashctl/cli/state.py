"""What every command needs: the config (loaded once, with --set overrides) and the plugin host."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import FlashConfig, load_config


@dataclass
class State:
    config_path: Path | None = None
    debug: bool = False
    _host: Any = None
    _host_key: Any = None
    _configs: dict = field(default_factory=dict)

    def reset(self, debug: bool = False) -> None:
        """Forget everything loaded (each ``main`` call starts clean)."""
        self.__init__(debug=debug)

    def config(self, overrides: list[str] | None = None) -> FlashConfig:
        key = tuple(overrides or ())
        if key not in self._configs:
            self._configs[key] = load_config(self.config_path, list(key))
        return self._configs[key]

    def host(self, config: FlashConfig):
        from ..plugins import host_for

        key = (tuple(config.plugins.disable), tuple(config.plugins.paths), str(config.root()))
        if self._host is None or self._host_key != key:
            self._host, self._host_key = host_for(config), key
        return self._host

    def library(self, config: FlashConfig):
        from ..library import MotionLibrary

        return MotionLibrary(config.library_path())


state = State()
