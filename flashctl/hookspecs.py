"""Every hook a flashctl plugin may implement, with its contract.

Plugins mark implementations with ``flashctl.hookimpl``. Registration hooks are called once
when the registry is built; they must be cheap: no torch import, no file or network I/O.
Heavy code belongs inside the factories they register. Hooks only ever gain arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .registry import Register

hookspec = pluggy.HookspecMarker("flashctl")
hookimpl = pluggy.HookimplMarker("flashctl")


@hookspec
def register_backbones(register: "Register") -> None:
    """Register video diffusion backbones: ``register(name, factory, options=Model, summary=...)``.

    ``factory(options, ctx) -> Backbone`` (see :mod:`flashctl.model.interfaces`). A backbone
    owns its denoiser, VAE, conditioning encoders and scheduler config, names the parameters
    motion training may update, and describes its latent geometry so motions can be checked.
    """


@hookspec
def register_decoders(register: "Register") -> None:
    """Register latent-to-frame decoders: ``factory(options, ctx) -> Decoder``.

    A decoder turns latents plus the reference image into frames and says whether it has
    per-motion trainable parameters (the Detail Enhancement Decoder does).
    """


@hookspec
def register_augmentations(register: "Register") -> None:
    """Register clip augmentations: ``register(name, factory, preserves_motion=bool)``.

    ``factory(options, ctx) -> callable(video, generator) -> video`` on ``(F, C, H, W)`` floats in
    [-1, 1]. One random draw per clip, the same on every frame. Only augmentations registered with
    ``preserves_motion=True`` may feed the Motion Alignment Module.
    """


@hookspec
def register_metrics(register: "Register") -> None:
    """Register metrics: ``register(name, factory, higher_is_better=..., requires_target=bool)``.

    ``higher_is_better`` is a direction (True, False, ``flashctl.directions.NEAR_ONE`` for ratios to the
    real clip, or None), or a dict key -> direction when the metric returns several keys.
    ``factory(options, ctx) -> callable(generated, *, reference, target=None) -> dict[str, float]``
    where videos are ``(F, C, H, W)`` and the reference ``(C, H, W)``, floats in [-1, 1]. A metric
    with ``requires_target=True`` is skipped when no ground-truth continuation exists.
    """


@hookspec
def register_video_formats(register: "Register") -> None:
    """Register output video formats: ``register(name, writer, extensions=(".mp4",))``.

    ``writer(options, ctx)`` returns ``write(path, frames_uint8_FHWC, fps) -> Path``. Dispatch is
    by extension.
    """


@hookspec
def register_trackers(register: "Register") -> None:
    """Register experiment trackers: ``factory(options, ctx)`` with ``log(step, metrics)`` and ``finish()``."""


@hookspec
def register_commands(app: Any) -> None:
    """Add Typer commands or sub-apps to ``app``. Called before the command line is parsed."""


@hookspec(firstresult=True)
def resolve_weights(ref: str, cache_dir: Path, offline: bool) -> Path | None:
    """Turn a weights reference (local path, hub id) into a local folder, or None if not yours.

    The first non-None answer wins. Must not download anything when ``offline`` is true.
    """


@hookspec
def on_motion_saved(action: str, path: Path) -> None:
    """Called after an action's weights were saved atomically into ``path``. Must not modify it."""
