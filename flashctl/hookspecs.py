"""Every hook a flashctl plugin may implement, with its contract, and each component kind's traits.

Plugins mark implementations with ``flashctl.hookimpl``. Registration hooks are called once
when the registry is built; they must be cheap: no torch import, no file or network I/O.
Heavy code belongs inside the factories they register. Hooks only ever gain arguments.

A ``register_<kind>s`` hook gets ``register(name, factory, options=Model, **traits)``: ``options``
is the pydantic model the component's settings are validated with (default: none), and the keyword
traits are what the core needs to know about the component without building it. Each kind's traits
model below lists them; the registry validates them once (an unknown or mistyped trait fails that
plugin with a line naming the plugin, the component and the trait) and exposes ``spec.traits``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy
from pydantic import BaseModel, ConfigDict, Field

from .directions import ARROWS, Direction

if TYPE_CHECKING:
    from .registry import Register

hookspec = pluggy.HookspecMarker("flashctl")
hookimpl = pluggy.HookimplMarker("flashctl")


class Traits(BaseModel):
    """What every component declares; the traits of backbones and decoders."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    summary: str = Field("", description="a str: one line for `flashctl plugins`")

    def describe(self) -> str:
        """The traits other than the summary that differ from their defaults, in a few words."""
        shown = self.model_dump(exclude={"summary"}, exclude_defaults=True)
        words = {k: " ".join(map(repr, v)) if isinstance(v, tuple) else repr(v) for k, v in shown.items()}
        return ", ".join(k if shown[k] is True else f"{k} {w}" for k, w in words.items())


@hookspec
def register_backbones(register: "Register") -> None:
    """Register video diffusion backbones: ``register(name, factory, options=Model, summary=...)``.

    ``factory(options, ctx) -> Backbone`` (see :mod:`flashctl.model.interfaces`). A backbone
    owns its denoiser, VAE and conditioning encoders, says how it is trained and sampled, names
    the modules motion LoRA wraps, and describes its latent geometry so motions can be checked.
    Traits: :class:`Traits`.
    """


@hookspec
def register_decoders(register: "Register") -> None:
    """Register latent-to-frame decoders: ``register(name, factory, options=Model, summary=...)``.

    ``factory(options, ctx) -> Decoder``. A decoder turns latents plus the reference image into
    frames and says (``has_weights``) whether it has per-motion parameters (the Detail Enhancement
    Decoder does). Traits: :class:`Traits`.
    """


class AugmentationTraits(Traits):
    preserves_motion: bool = Field(False, description="a bool: the same transform on every frame, so it may "
                                                      "feed the Motion Alignment Module")


@hookspec
def register_augmentations(register: "Register") -> None:
    """Register clip augmentations: ``register(name, factory, preserves_motion=bool)``.

    ``factory(options, ctx) -> callable(video, generator) -> video`` on ``(F, C, H, W)`` floats in
    [-1, 1]. One random draw per clip, the same on every frame. Only augmentations registered with
    ``preserves_motion=True`` may feed the Motion Alignment Module. Traits: :class:`AugmentationTraits`.
    """


class MetricTraits(Traits):
    higher_is_better: dict[str, Direction] | Direction = Field(
        None, description="a direction (True, False, 'near 1' or None), or a dict key -> direction")
    requires_target: bool = Field(False, description="a bool: needs the real continuation (skipped without one)")
    aggregate: bool = Field(False, description="a bool: scores a whole set ({} per video, the set's "
                                               "scores from compute())")
    accepts_prompt: bool = Field(False, description="a bool: takes the action's prompt as prompt=")

    def direction(self, key: str) -> Direction:
        """Which way the score ``key`` is better."""
        hib = self.higher_is_better
        return hib.get(key) if isinstance(hib, dict) else hib

    def describe(self) -> str:
        hib = self.higher_is_better
        arrows = " ".join(f"{k}{ARROWS[d]}" for k, d in hib.items()) if isinstance(hib, dict) else ARROWS[hib]
        return ", ".join(filter(None, [arrows, Traits.describe(self.model_copy(update={"higher_is_better": None}))]))


@hookspec
def register_metrics(register: "Register") -> None:
    """Register metrics: ``register(name, factory, higher_is_better=..., requires_target=bool)``.

    ``higher_is_better`` is a direction (True, False, ``flashctl.directions.NEAR_ONE`` for ratios to the
    real clip, or None), or a dict key -> direction when the metric returns several keys.
    ``factory(options, ctx) -> callable(generated, *, reference, target=None) -> dict[str, float]``
    where videos are ``(F, C, H, W)`` and the reference ``(C, H, W)``, floats in [-1, 1]. A metric
    with ``requires_target=True`` is skipped when no ground-truth continuation exists; one with
    ``accepts_prompt=True`` is also passed ``prompt=`` (the action's prompt); one with
    ``aggregate=True`` returns ``{}`` per video and its scores over the whole set from
    ``callable.compute()``. Traits: :class:`MetricTraits`.
    """


class VideoFormatTraits(Traits):
    extensions: tuple[str, ...] = Field(min_length=1, description="a non-empty tuple of suffixes, the first "
                                                                  "appended to each output name ('' for a folder)")


@hookspec
def register_video_formats(register: "Register") -> None:
    """Register output video formats: ``register(name, writer, extensions=(".mp4",))``.

    ``writer(options, ctx)`` returns ``write(path, frames_uint8_FHWC, fps) -> Path``; ``path`` is the
    output name with the first extension. ``animate -o NAME.EXT`` writes the format that lists
    ``.EXT`` among its extensions. Traits: :class:`VideoFormatTraits`.
    """


class TrackerTraits(Traits):
    requires: tuple[str, ...] = Field((), description="a tuple of module names the tracker imports (checked "
                                                      "before training starts, without importing them)")
    install: str = Field("", description="a str: the command that installs what ``requires`` names, e.g. "
                                         "\"pip install 'flashctl[tensorboard]'\"")


@hookspec
def register_trackers(register: "Register") -> None:
    """Register experiment trackers: ``register(name, factory, options=Model, requires=(...), install=...)``.

    ``factory(options, ctx, run) -> tracker`` is called once per training run, in the main process only,
    after the model is built; ``run`` is a :class:`flashctl.trackers.TrackerRun` (action, run id, the
    run's own folder ``run.dir``, the resolved config). The tracker has ``log(step, scalars)``
    (``dict[str, float]``, step >= 1 and never decreasing), ``log_video(step, tag, frames, fps)``
    (``(F, H, W, 3)`` uint8 frames) and ``finish()``. A tracker that raises is dropped with a warning;
    training goes on. A tracker whose ``requires`` modules are not importable is a config error naming
    ``install`` before any step runs. Traits: :class:`TrackerTraits`.
    """


TRAITS: dict[str, type[Traits]] = {
    "backbone": Traits, "decoder": Traits, "augmentation": AugmentationTraits, "metric": MetricTraits,
    "video_format": VideoFormatTraits, "tracker": TrackerTraits,
}  # kind -> its traits model; each kind is filled by the hook ``register_<kind>s``


@hookspec
def register_commands(app: Any) -> None:
    """Add Typer commands or sub-apps to ``app``. Called before the command line is parsed."""


@hookspec(firstresult=True)
def resolve_weights(ref: str, offline: bool) -> Path | None:
    """Turn a weights reference (local path, hub id) into a local folder, or None if not yours.

    The first non-None answer wins. Must not download anything when ``offline`` is true.
    """


@hookspec
def on_motion_saved(action: str, path: Path) -> None:
    """Called after an action's weights were saved atomically into ``path``. Must not modify it."""
