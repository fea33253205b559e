"""Build the pluggy manager and the component registry.

Built-in plugins and third-party ones are found the same way: the ``flashctl`` entry-point
group. A plugin that fails to import is recorded (``flashctl plugins`` and ``doctor`` show it)
and the rest keep working. ``[plugins] disable`` and ``FLASHCTL_DISABLE_PLUGINS`` (comma
separated) skip plugins by name; ``[plugins] paths`` loads project-local ``*.py`` plugin files.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable

import pluggy

from . import hookspecs
from .errors import ConfigError, DuplicateComponentError
from .registry import KINDS, Register, Registry

REGISTER_HOOKS = {f"register_{k}s": k for k in KINDS}


@dataclass
class PluginInfo:
    name: str
    distribution: str
    version: str
    source: str  # "entry point", "local file", "in process"
    hooks: list[str] = field(default_factory=list)


@dataclass
class PluginFailure:
    name: str
    source: str
    error: str


@dataclass
class PluginHost:
    """The loaded plugins, their failures, and the registry they filled."""

    pm: pluggy.PluginManager
    registry: Registry
    plugins: list[PluginInfo]
    failures: list[PluginFailure]
    disabled: list[str]


def _disabled(disable: Iterable[str]) -> set[str]:
    env = os.environ.get("FLASHCTL_DISABLE_PLUGINS", "")
    return set(disable) | {n.strip() for n in env.split(",") if n.strip()}


def _load_file(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"flashctl_local_{path.stem}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _local_files(paths: Iterable[str], root: Path) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        p = p if p.is_absolute() else root / p
        if not p.exists():
            raise ConfigError(f"plugins.paths: {raw!r} does not exist (looked in {p})",
                              hint="fix the path or remove it from [plugins] paths")
        files += sorted(p.glob("*.py")) if p.is_dir() else [p]
    return files


def build_host(disable: Iterable[str] = (), paths: Iterable[str] = (), root: Path | None = None,
               extra: Iterable[tuple[str, Any]] = (), entry_point_group: str = "flashctl") -> PluginHost:
    """Load every plugin and fill a fresh registry. ``extra`` adds (name, object) pairs in-process."""
    pm = pluggy.PluginManager("flashctl")
    pm.add_hookspecs(hookspecs)
    skip = _disabled(disable)
    plugins: list[PluginInfo] = []
    failures: list[PluginFailure] = []
    disabled: list[str] = []

    def add(name: str, load: Any, dist: str, version: str, source: str) -> None:
        if name in skip:
            disabled.append(name)
            return
        try:
            obj = load()
            pm.register(obj, name=name)
        except (Exception, SystemExit) as exc:  # a broken plugin, even one calling sys.exit, must not break the CLI
            failures.append(PluginFailure(name, source, f"{type(exc).__name__}: {exc}"))
            return
        plugins.append(PluginInfo(name, dist, version, source))

    for ep in sorted(entry_points(group=entry_point_group), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist else "?"
        version = ep.dist.version if ep.dist else ""
        add(ep.name, ep.load, dist, version, "entry point")
    for path in _local_files(paths, root or Path.cwd()):
        add(f"local:{path.stem}", lambda p=path: _load_file(p), str(path), "", "local file")
    for name, obj in extra:
        add(name, lambda o=obj: o, "(in process)", "", "in process")

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise ConfigError(f"plugin hook error: {exc}", hint="check the hook names against flashctl.hookspecs") from None

    registry = Registry()
    by_name = {p.name: p for p in plugins}
    for hook_name in sorted(set(hookspecs.__dict__) & {h for h in dir(pm.hook) if not h.startswith("_")}):
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            info = by_name.get(impl.plugin_name)
            if info is not None and hook_name not in info.hooks:
                info.hooks.append(hook_name)
    for hook_name, kind in REGISTER_HOOKS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            info = by_name[impl.plugin_name]
            register = Register(registry, kind, info.name, info.version)
            try:
                impl.function(register=register)
            except (ConfigError, DuplicateComponentError):
                raise
            except (Exception, SystemExit) as exc:
                failures.append(PluginFailure(info.name, hook_name, f"{type(exc).__name__}: {exc}"))
    return PluginHost(pm, registry, plugins, failures, sorted(disabled))


def host_for(config: Any) -> PluginHost:
    """The plugin host for a loaded :class:`~flashctl.config.FlashConfig`."""
    return build_host(config.plugins.disable, config.plugins.paths, config.root())
