"""Experiment trackers for ``train``: open the chosen ones, log to all of them, and never lose a run to one.

``train.trackers`` (or ``flashctl train --tracker NAME``, repeatable) names trackers that plugins register
through ``register_trackers`` (built in: ``tensorboard``, ``wandb``, ``jsonl``; off by default). Each run
logs into its own folder, ``<tracker dir>/<run id>/``: by default the action's ``.cache/runs/``, so the
folder's name is the run id that ``provenance.json`` records.

What ``train`` logs (steps are optimizer steps, 1-based; the decoder fit continues the count):

* ``train/loss`` every step: the step's denoising loss (mean over micro-batches and processes);
* ``train/lr`` every step: the learning rate after the step;
* ``train/fixed_clip_loss`` about 20 times a run and at the last step: the plain denoising loss of the
  first training clip at :data:`PROBE_DRAWS` fixed (noise, timestep) draws. Not held out (the clip is
  trained on), but free of the sampling noise that makes ``train/loss`` jump, so it shows the fit itself;
* ``decoder/fit_loss`` each step of the detail decoder's fit, at steps ``total + 1 ...``;
* ``preview/motion_gain`` and ``preview/mae`` at the last step: the preview (the first clip's first frame
  animated as ``flashctl animate`` does) against that clip's real frames: the mean frame-to-frame change
  of the preview over the real one's (1 = as much motion), and the mean absolute pixel error in [0, 1].
  Again a training clip: ``flashctl eval`` scores held-out people;
* the preview video itself (tag ``preview``) at the last step.

Trackers are built in the main process only; every process checks the names and packages first, so a
bad name fails every process at once, before any training step. A tracker that raises while logging
(or while being built) is dropped with a warning, and training goes on.
"""

from __future__ import annotations

import difflib
import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from .errors import ConfigError
from .progress import NullReporter, Reporter

PROBE_DRAWS = 4  # fixed (noise, timestep) draws of the first clip behind train/fixed_clip_loss
PROBE_POINTS = 20  # about how many times a run train/fixed_clip_loss is measured


@dataclass(frozen=True)
class TrackerRun:
    """What a tracker factory is told about the run it logs."""

    action: str
    run_id: str
    dir: Path  # this run's own folder, shared by its trackers (created before the factories run)
    config: dict[str, Any] = field(default_factory=dict)  # the resolved config, JSON-able
    total_steps: int = 0


class Tracker(Protocol):
    def log(self, step: int, scalars: dict[str, float]) -> None: ...
    def log_video(self, step: int, tag: str, frames: np.ndarray, fps: float) -> None: ...
    def finish(self) -> None: ...


def check_trackers(names: list[str], host: Any) -> list[Any]:
    """The specs of ``names`` (``train.trackers``); an unknown name or a missing package is one config line."""
    known = host.registry.names("tracker")
    specs = []
    for i, name in enumerate(names):
        where = f"train.trackers[{i}]"
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            raise ConfigError(f"{where}: unknown tracker '{name}'"
                              + (f" (did you mean '{close[0]}'?)" if close else "")
                              + f"; known: {', '.join(known) or 'none'}")
        spec = host.registry.get("tracker", name)
        missing = [m for m in spec.traits.requires if not _importable(m)]
        if missing:
            raise ConfigError(_missing(where, name, missing, spec.traits.install))
        specs.append(spec)
    return specs


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent that is not a package; a module whose __spec__ is None
        return False


def _missing(where: str, name: str, modules: list[str], install: str) -> str:
    return (f"{where}: tracker '{name}' needs {', '.join(modules)}, which is not installed: "
            + (install or f"pip install {' '.join(modules)}"))


class Trackers:
    """The open trackers of one run. Empty (and free) until :meth:`open`; a context manager that finishes them."""

    def __init__(self) -> None:
        self._open: list[tuple[str, Tracker]] = []
        self._reporter: Reporter = NullReporter()
        self._probes: list[tuple[str, Callable[[], float], int, int]] = []
        self.step = 0  # the last step logged
        self.run: TrackerRun | None = None

    def __bool__(self) -> bool:
        return bool(self._open)

    def __enter__(self) -> Trackers:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.finish()

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._open]

    def open(self, config: Any, host: Any, run: TrackerRun, *, names: list[str] | None = None, ctx: Any = None,
             reporter: Reporter = NullReporter(), active: bool = True) -> Trackers:
        """Check ``names`` (default ``config.train.trackers``) and, if ``active``, build them into ``run.dir``."""
        names = list(dict.fromkeys(config.train.trackers if names is None else names))
        specs = check_trackers(names, host)
        where = config.source if config.source != "<defaults>" else "config"
        options = [s.validate_options(config.component_options("tracker", s.name), where, f"options.tracker.{s.name}")
                   for s in specs]
        self._reporter, self.run = reporter, run
        if not active or not specs:
            return self
        run.dir.mkdir(parents=True, exist_ok=True)
        for i, (spec, opts) in enumerate(zip(specs, options)):
            try:
                self._open.append((spec.name, spec.factory(opts, ctx, run)))
            except ImportError as exc:  # the package is there but does not import: still the user's to fix
                raise ConfigError(_missing(f"train.trackers[{i}]", spec.name, [exc.name or str(exc)],
                                           spec.traits.install)) from None
            except Exception as exc:
                self._warn(spec.name, "could not start", exc)
        if self._open:
            reporter.note(f"tracking to {', '.join(self.names)} in {run.dir}")
        return self

    def probe(self, tag: str, measure: Callable[[], float], total: int, points: int = PROBE_POINTS) -> None:
        """Log ``measure()`` as ``tag`` about ``points`` times over ``total`` steps and at the last one.

        Only when a tracker is open, so an untracked run pays nothing."""
        if self._open:
            self._probes.append((tag, measure, max(1, total // points), total))

    def log(self, step: int, scalars: dict[str, float]) -> None:
        """Log ``scalars`` (and any probe due at ``step``) to every open tracker."""
        if not self._open:
            return
        scalars = dict(scalars)
        for probe in list(self._probes):
            tag, measure, every, total = probe
            if step <= total and (step % every == 0 or step == total):
                try:
                    scalars[tag] = float(measure())
                except Exception as exc:  # a measurement is extra: it never stops training
                    self._probes.remove(probe)
                    self._warn_text(f"'{tag}' could not be measured at step {step}", exc)
        self._send(step, scalars)

    def _send(self, step: int, scalars: dict[str, float]) -> None:
        self.step = max(self.step, step)
        self._each("log", step, {k: float(v) for k, v in scalars.items()})

    def log_series(self, tag: str, values: list[float], first_step: int) -> None:
        """One value per step from ``first_step`` on (the decoder fit's losses after the LoRA steps)."""
        for i, value in enumerate(values if self._open else []):
            self._send(first_step + i, {tag: value})

    def log_video(self, tag: str, frames: np.ndarray, fps: float, step: int | None = None) -> None:
        """``(F, H, W, 3)`` uint8 frames as a video, at ``step`` (default: the last step logged)."""
        if self._open:
            self._each("log_video", self.step if step is None else step, tag, np.ascontiguousarray(frames), fps)

    def log_preview(self, preview: np.ndarray, real: np.ndarray, fps: float, step: int | None = None) -> None:
        """The preview video and its motion numbers against the real clip it starts from (see the module doc)."""
        if not self._open:
            return
        self.step = max(self.step, step or 0)
        try:
            scores = preview_scores(preview, real)
        except Exception as exc:
            scores = {}
            self._warn_text("the preview's scores could not be computed", exc)
        if scores:
            self._send(self.step, scores)
        self.log_video("preview", preview, fps)

    def finish(self) -> None:
        """Close every tracker (at the end and on error); a failing close is a warning."""
        trackers, self._open, self._probes = self._open, [], []
        for name, tracker in trackers:
            try:
                tracker.finish()
            except Exception as exc:
                self._warn(name, "failed to finish", exc)

    def _each(self, method: str, step: int, *args: Any) -> None:
        for entry in list(self._open):
            name, tracker = entry
            call = getattr(tracker, method, None)
            if call is None:  # a tracker without videos
                continue
            try:
                call(step, *args)
            except Exception as exc:
                self._open.remove(entry)
                self._warn(name, f"failed at step {step}", exc)
                try:
                    tracker.finish()
                except Exception:
                    pass  # already reported as failed

    def _warn(self, name: str, what: str, exc: Exception) -> None:
        self._warn_text(f"tracker '{name}' {what}", exc, "training goes on without it")

    def _warn_text(self, what: str, exc: Exception, then: str = "not logged") -> None:
        self._reporter.note(f"{what} ({type(exc).__name__}: {exc}); {then}", level="warning")


def preview_scores(preview: np.ndarray, real: np.ndarray) -> dict[str, float]:
    """``preview/motion_gain`` and ``preview/mae`` of ``(F, H, W, 3)`` uint8 frames against the real clip."""
    a, b = (np.asarray(v, np.float32) / 255.0 for v in (preview, real))
    frames = min(len(a), len(b))
    a, b = a[:frames], b[:frames]
    scores = {"preview/mae": float(np.abs(a - b).mean())}
    if frames > 1:
        real_change = float(np.abs(np.diff(b, axis=0)).mean())
        if real_change > 0:
            scores["preview/motion_gain"] = float(np.abs(np.diff(a, axis=0)).mean()) / real_change
    return {k: v for k, v in scores.items() if math.isfinite(v)}


def fixed_clip_loss(model: Any, latents: Any, prompt_emb: Any, seed: int, draws: int = PROBE_DRAWS) -> Callable[[], float]:
    """A measure of the denoising loss of ``latents[0]`` at ``draws`` fixed (noise, timestep) draws.

    Its own generator, eval mode and no gradients: the training trajectory is the same with or without it.
    """
    import torch

    batch = latents[:1].expand(draws, *latents.shape[1:])  # (draws, F, c, h, w)

    def measure() -> float:
        unet = model.backbone.unet
        was_training = unet.training
        unet.eval()
        try:
            with torch.no_grad():
                return model.training_loss(batch, prompt_emb, torch.Generator().manual_seed(seed)).item()
        finally:
            unet.train(was_training)

    return measure


def gif_bytes(frames: np.ndarray, fps: float) -> bytes:
    """``(F, H, W, 3)`` uint8 frames as an animated GIF, in memory (what TensorBoard shows as a video)."""
    import io

    from PIL import Image

    images = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(1, round(1000 / fps)), loop=0)
    return buffer.getvalue()
