"""Component specs and the registry that plugins fill through the ``register_*`` hooks.

A spec is cheap data: a name, a factory that builds the component lazily (heavy imports
happen inside it), the pydantic options model the component validates its settings with,
its kind's traits (:data:`flashctl.hookspecs.TRAITS`, validated once here) and which plugin
registered it. Building a component is ``registry.create(kind, name, options, ctx)``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ConfigError, DuplicateComponentError, UnknownComponentError
from .hookspecs import TRAITS, Traits

KINDS = tuple(TRAITS)


class Options(BaseModel):
    """Base for every component's options: frozen, unknown keys and nan/inf rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class NoOptions(Options):
    """For components that take no options."""


@dataclass(frozen=True)
class ComponentSpec:
    kind: str
    name: str
    factory: Callable[..., Any]
    options: type[Options]
    traits: Traits  # the kind's traits model, e.g. MetricTraits
    plugin: str
    plugin_version: str

    def validate_options(self, raw: dict[str, Any] | None, source: str = "config", key: str = "") -> Options:
        """Phase-two validation with the component's own options model; errors name ``source`` and ``key``."""
        from .validation import render_validation_error

        try:
            return self.options.model_validate(raw or {})
        except ValidationError as exc:
            raise ConfigError(*render_validation_error(exc, source, self.options,
                                                       key or f"options.{self.kind}.{self.name}")) from None


class Register:
    """The callable handed to ``register_<kind>s`` hooks; stamps the plugin's name on each spec."""

    def __init__(self, registry: "Registry", kind: str, plugin: str, plugin_version: str) -> None:
        self._registry, self._kind = registry, kind
        self._plugin, self._version = plugin, plugin_version

    def __call__(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        options: type[Options] = NoOptions,
        **traits: Any,
    ) -> None:
        model = TRAITS[self._kind]
        try:
            valid = model.model_validate(traits)
        except ValidationError as exc:
            keys = dict.fromkeys(str(e["loc"][0]) for e in exc.errors())  # a union reports each key several times
            raise TypeError(f"plugin '{self._plugin}', {self._kind} '{name}': "
                            + "; ".join(_trait_error(model, key, traits) for key in keys)) from None
        self._registry.add(ComponentSpec(self._kind, name, factory, options, valid, self._plugin, self._version))


def _trait_error(model: type[Traits], key: str, traits: dict[str, Any]) -> str:
    if key not in model.model_fields:
        return f"unknown trait '{key}' (known: {', '.join(model.model_fields)})"
    expected = model.model_fields[key].description
    return f"trait '{key}' = {traits[key]!r}: expected {expected}" if key in traits else f"missing trait '{key}': {expected}"


class Registry:
    """Name -> spec per kind. Duplicates are an error naming both plugins."""

    def __init__(self) -> None:
        self._specs: dict[str, dict[str, ComponentSpec]] = {k: {} for k in KINDS}

    def add(self, spec: ComponentSpec) -> None:
        table = self._specs[spec.kind]
        if spec.name in table:
            other = table[spec.name]
            raise DuplicateComponentError(
                f"{spec.kind} '{spec.name}' is registered by both plugin '{other.plugin}' and plugin '{spec.plugin}'",
                hint="disable one of them with `[plugins] disable = [\"NAME\"]` in flashctl.toml",
            )
        table[spec.name] = spec

    def names(self, kind: str) -> list[str]:
        return sorted(self._specs[kind])

    def specs(self, kind: str | None = None) -> list[ComponentSpec]:
        kinds = KINDS if kind is None else (kind,)
        return [self._specs[k][n] for k in kinds for n in sorted(self._specs[k])]

    def get(self, kind: str, name: str, where: str | None = None) -> ComponentSpec:
        table = self._specs[kind]
        if name in table:
            return table[name]
        close = difflib.get_close_matches(name, list(table), n=1)
        label = f"{where}: " if where else ""
        suggestion = f"did you mean '{close[0]}'? " if close else ""
        available = ", ".join(sorted(table)) or "none"
        raise UnknownComponentError(
            f"{label}unknown {kind.replace('_', ' ')} '{name}'; available: {available}",
            hint=f"{suggestion}see `flashctl plugins`",
        )

    def create(self, kind: str, name: str, options: dict[str, Any] | None = None, ctx: Any = None,
               where: str | None = None) -> Any:
        """Validate ``options`` with the component's model and run its factory."""
        spec = self.get(kind, name, where)
        opts = spec.validate_options(options, where or "config")
        return spec.factory(opts, ctx)
