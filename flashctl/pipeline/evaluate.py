"""flashctl eval: animate reference images with a learned action and score the videos.

With ``clips`` (held-out videos, never trained on), each clip's first frame is the reference and the
clip is the ground-truth continuation (``target``) for metrics that need one; without ``clips`` or
``images``, the action's own prepared clips play that role (a training-set score). Every metric in
``config.eval.metrics`` scores every sample; ``metrics.json`` in the output folder records the
per-sample scores and per-frame series (for plots), their means, each key's direction and the resolved
config. It is replaced atomically, so a failed run leaves the previous one intact. The rendered videos
and their real clips stay in memory on the result, for :mod:`.report` to write.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .. import __version__
from ..config import FlashConfig, config_to_dict
from ..directions import Direction
from ..errors import ConfigError, ImageReadError
from ..hookspecs import MetricTraits
from ..progress import NullReporter, Reporter

if TYPE_CHECKING:
    from ..library import MotionLibrary
    from ..plugins import PluginHost

METRICS_FILE = "metrics.json"
WEIGHT_SUFFIXES = (".safetensors", ".json")  # what in weights/ decides the output (not a README.md model card)


@dataclass
class EvalResult:
    action: str
    per_sample: list[dict]  # {"reference": label, "seed": int, "scores": {"metric/key": float}}
    summary: dict[str, float]  # "metric/key" -> mean over the samples that have it
    path: Path  # the metrics.json written
    higher_is_better: dict[str, Direction] = field(default_factory=dict)  # "metric/key" -> flashctl.directions
    videos: list[np.ndarray] = field(default_factory=list, repr=False)  # (F, H, W, 3) uint8 per sample, if kept
    fps: float = 8.0  # frame rate of ``videos``
    targets: list[np.ndarray | None] = field(default_factory=list, repr=False)  # (F', H, W, 3) real clip per video
    weights: dict[str, Any] | None = None  # the scored motion version: run id and weights sha256s (scored_weights)
    main_process: bool = True  # False in the other processes of a multi-process launch (their own rows only)


@dataclass
class _Metric:
    name: str
    score: Callable[..., dict[str, float]]
    traits: MetricTraits
    plugin: str


def _metrics(config: FlashConfig, host: PluginHost) -> list[_Metric]:
    """Build every configured metric; errors name the config key (eval.metrics[i] or options.metric.NAME)."""
    from ..context import context_for

    ctx = context_for(config, host)  # weight-based metrics resolve their weights through it
    source = config.source if config.source != "<defaults>" else "config"
    metrics = []
    for i, name in enumerate(config.eval.metrics):
        spec = host.registry.get("metric", name, where=f"{source}: eval.metrics[{i}]")
        score = host.registry.create("metric", name, config.component_options("metric", name), ctx=ctx,
                                     where=source)
        metrics.append(_Metric(name, score, spec.traits, f"{spec.plugin} {spec.plugin_version}"))
    return metrics


def _samples(config: FlashConfig, library: MotionLibrary, action: str, images: list[Path] | None, clips: list[Path] | None,
             reporter: Reporter) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """(label, reference (H, W, 3) uint8, target (F, H, W, 3) uint8 or None) per sample."""
    if clips is not None:  # held-out clips: frame 0 is the reference, the clip the ground truth
        from .prepare import expand_clips, normalise_clips

        files = expand_clips(clips)
        videos = normalise_clips(files, config, [], reporter)  # (N, F, S, S, 3) uint8
        return [(str(f), clip[0], clip) for f, clip in zip(files, videos)]
    if images is None:
        clips, _meta = library.load_frames(action)  # (N, F, S, S, 3) uint8
        return [(f"clip {i}", clip[0], clip) for i, clip in enumerate(clips)]
    if not images:
        raise ImageReadError("eval: the list of reference images is empty",
                             hint="pass --images FILE_OR_FOLDER, or leave it out to use the action's own clips")
    from ..video import read_image

    return [(str(p), read_image(p, size=config.prepare.size), None) for p in images]


def _fit(video: Any, height: int, width: int) -> Any:
    """Resize ``(N, C, h, w)`` to ``(N, C, height, width)`` if needed (antialiased bilinear)."""
    if tuple(video.shape[-2:]) == (height, width):
        return video
    import torch.nn.functional as F

    return F.interpolate(video, size=(height, width), mode="bilinear", antialias=True, align_corners=False)


def _psnr(a: Any, b: Any) -> list[float]:
    """Per-frame PSNR in dB of ``(N, C, H, W)`` [-1, 1] videos on the [0, 1] scale, capped at 100 like ``first-frame``."""
    import torch

    mse = ((a - b) / 2).pow(2).mean(dim=(1, 2, 3))  # (N,)
    return (10 * torch.log10(1 / mse.clamp_min(1e-10))).tolist()


def _changes(video: Any) -> list[float]:
    """Mean absolute change between consecutive frames on the [0, 1] scale: F-1 values."""
    return ((video[1:] - video[:-1]).abs().mean(dim=(1, 2, 3)) / 2).tolist()  # (F-1,)


def frame_series(generated: Any, reference: Any, target: Any = None) -> dict[str, list[float]]:
    """Per-frame curves for the report's plots.

    ``psnr_reference``: each frame against the reference image (how far the video drifts from it);
    ``change``: frame-to-frame change. With a target also ``psnr_target`` (frame t against the real
    frame t, over the shorter video) and ``target_change`` (the real clip's frame-to-frame change).
    """
    series = {"psnr_reference": _psnr(generated, reference[None]), "change": _changes(generated)}
    if target is not None:
        frames = min(len(generated), len(target))
        series["psnr_target"] = _psnr(generated[:frames], target[:frames])
        series["target_change"] = _changes(target)
    return series


def scored_weights(version: Path) -> dict[str, Any]:
    """What a score is tied to: the run id and the sha256 of every weights file of a motion version folder.

    ``{"run_id", "version" (the folder's name), "files": {"weights/lora.safetensors": sha256, ...},
    "lora_sha256", "decoder_sha256" (None without a fitted decoder)}``, hashed from the files themselves.
    """
    from ..files import read_json, sha256_file
    from ..model.motion_files import CONFIG_FILE, DECODER_FILE, LORA_FILE

    version = Path(version)
    weights = version / "weights"
    config = read_json(weights / CONFIG_FILE) or {}
    files = {p.relative_to(version).as_posix(): sha256_file(p) for p in sorted(weights.rglob("*"))
             if p.is_file() and p.suffix in WEIGHT_SUFFIXES}
    lora = (config.get("lora") or {}).get("file") or LORA_FILE
    decoder = (config.get("decoder") or {}).get("file") or DECODER_FILE
    return {"run_id": (read_json(version / "provenance.json") or {}).get("run_id"), "version": version.name,
            "files": files, "lora_sha256": files.get(f"weights/{lora}"), "decoder_sha256": files.get(f"weights/{decoder}")}


def _loaded_weights(version: Path, animator: Any, load: Callable[[], Any]) -> tuple[Any, dict[str, Any] | None]:
    """``(animator, scored_weights of version)``: ``load()`` loads that version folder (never changed after its
    save, so a save meanwhile cannot mix versions); None for an animator not loaded from the library."""
    from .animate import Animator

    if animator is not None and not isinstance(animator, Animator):
        return animator, None  # a stand-in (tests, the frozen baseline): no motion weights
    animator = load() if animator is None else animator
    return animator, scored_weights(version) if (version / "weights" / "config.json").is_file() else None


def _json_safe(value: Any) -> Any:
    """NaN and infinities become null (JSON has no spelling for them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def evaluate(config: FlashConfig, library: MotionLibrary, action: str, host: PluginHost, *, images: list[Path] | None = None,
             clips: list[Path] | None = None, animator: Any = None, reporter: Reporter = NullReporter(), out_dir: Path | None = None) -> EvalResult:
    """Render every reference with ``action``, score it with ``config.eval.metrics``, write metrics.json.

    Under ``accelerate launch`` (:mod:`flashctl.sharding`) each process renders and scores its share of the
    samples with the per-sample metrics; the main one gathers the rows and videos, feeds the whole set to
    the aggregate metrics (FVD) in sample order and writes metrics.json. The other processes return their
    own rows with ``main_process=False`` and write nothing.
    """
    from ..files import atomic_write
    from ..sharding import current_shard

    shard = current_shard(config)
    config, reporter = shard.configure(config), shard.reporter(reporter)
    motion_dir = library.require(action)
    metrics = _metrics(config, host)
    if images is not None and clips is not None:
        raise ConfigError("eval: pass reference images or held-out clips, not both",
                          hint="--clips scores motion against each clip's continuation; --images has no ground truth")
    samples = _samples(config, library, action, images, clips, reporter)
    active = [m for m in metrics if not (m.traits.requires_target and images is not None)]
    skipped = [m.name for m in metrics if m not in active]
    if skipped:
        reporter.note(f"eval: skipping {', '.join(skipped)}: without clips there is no ground-truth "
                      "continuation to compare with", level="warning")
    from .animate import load_animator

    mine = shard.take(len(samples))
    version = shard.broadcast(library.version_dir(action) if shard.main else None)  # every process: the same save
    animator, weights = _loaded_weights(version, animator,  # a process with no share loads nothing
                                        lambda: load_animator(config, library, action, host, reporter, version)
                                        ) if mine else (animator, None)
    prompt = library.manifest(action).prompt
    scored = _score_share(animator, [(i, _sample_seed(config, i), *samples[i]) for i in mine], prompt,
                          [m for m in active if not m.traits.aggregate], reporter)
    shares = shard.gather(scored)
    out = Path(out_dir) if out_dir is not None else Path(motion_dir) / config.eval.out
    fps = float(getattr(animator, "fps", 8.0))
    if shares is None:  # another process: the main one scores the set and writes
        return EvalResult(action, [row for _, row, _, _ in scored], {}, out / METRICS_FILE, fps=fps, weights=weights,
                          main_process=False)
    ordered = sorted((entry for share in shares for entry in share), key=lambda entry: entry[0])
    per_sample = [row for _, row, _, _ in ordered]
    videos = [frames for _, _, frames, _ in ordered]
    targets = [samples[index][2] for index, _, _, _ in ordered]
    directions: dict[str, Direction] = {}
    for _, _, _, seen in ordered:
        directions.update(seen)

    summary = {}
    for key in directions:
        finite = [row["scores"][key] for row in per_sample if math.isfinite(row["scores"].get(key, math.nan))]
        if finite:
            summary[key] = sum(finite) / len(finite)
    for metric in active:
        if metric.traits.aggregate:  # e.g. FVD: one distance between the generated and the real set
            summary.update(_aggregate(metric, videos, [samples[i][1] for i, _, _, _ in ordered], targets, prompt,
                                      directions))

    out.mkdir(parents=True, exist_ok=True)
    record = {
        "action": action,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "flashctl_version": __version__,
        "references": "images" if images is not None else "held-out clips" if clips is not None else "clips",
        "weights": weights,
        "samples": per_sample,
        "summary": summary,
        "higher_is_better": directions,
        "metrics": {m.name: {"plugin": m.plugin, "options": config.component_options("metric", m.name)}
                    for m in metrics},
        "config": config_to_dict(config),
    }
    path = out / METRICS_FILE
    atomic_write(path, json.dumps(_json_safe(record), indent=2, allow_nan=False) + "\n")
    reporter.note(f"eval: wrote {path}")
    return EvalResult(action, per_sample, summary, path, directions, videos, fps, targets, weights)


def _tensors(frames: np.ndarray, image: np.ndarray, clip: np.ndarray | None) -> tuple[Any, Any, Any]:
    """A rendered video, its reference and real clip as ``(F, 3, H, W)``, ``(3, H, W)``, ``(F', 3, H, W)`` or None
    in [-1, 1], the latter two resized to the video's frames."""
    from ..video import frames_to_tensor

    generated = frames_to_tensor(frames)  # (F, 3, H, W)
    height, width = generated.shape[-2:]
    reference = _fit(frames_to_tensor(image[None]), height, width)[0]  # (3, H, W)
    target = None if clip is None else _fit(frames_to_tensor(clip), height, width)  # (F', 3, H, W)
    return generated, reference, target


def _sample_seed(config: FlashConfig, index: int) -> int:
    """The sampling seed of reference ``index``: ``animate.seed``, or under ``eval.noise = "per-sample"`` one drawn
    from ``(animate.seed, index)``, so no two references and no two seeds share a noise draw (``seed + index`` would
    give seeds 0 and 1 fifteen of sixteen draws in common, and their means would agree for that reason alone)."""
    seed = config.animate.seed
    if config.eval.noise == "shared":
        return seed
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _score_share(animator: Any, share: list[tuple[int, int, str, np.ndarray, np.ndarray | None]], prompt: str,
                 metrics: list[_Metric], reporter: Reporter) -> list[tuple[int, dict, np.ndarray, dict[str, Direction]]]:
    """Render and score each ``(index, seed, label, reference, clip)`` with the per-sample ``metrics``.

    Returns ``(index, row, video (F, H, W, 3) uint8, the directions of the keys scored)`` per sample.
    """
    scored = []
    reporter.start("eval", total=len(share))
    for index, seed, label, image, clip in share:
        frames = animator.render(image, seed)  # (F, H, W, 3) uint8
        generated, reference, target = _tensors(frames, image, clip)
        scores: dict[str, float] = {}
        directions: dict[str, Direction] = {}
        for metric in metrics:
            extra = {"prompt": prompt} if metric.traits.accepts_prompt else {}
            for key, value in metric.score(generated, reference=reference, target=target, **extra).items():
                scores[f"{metric.name}/{key}"] = float(value)
                directions[f"{metric.name}/{key}"] = metric.traits.direction(key)
        row = {"reference": label, "seed": seed, "scores": scores, "series": frame_series(generated, reference, target)}
        scored.append((index, row, frames, directions))
        reporter.advance(1, **scores)
    reporter.finish()
    return scored


def _aggregate(metric: _Metric, videos: list[np.ndarray], images: list[np.ndarray], targets: list[np.ndarray | None],
               prompt: str, directions: dict[str, Direction]) -> dict[str, float]:
    """Feed every sample, in order, to an aggregate metric (it returns ``{}`` each) and return its ``compute()``;
    records the keys' directions in ``directions``."""
    extra = {"prompt": prompt} if metric.traits.accepts_prompt else {}
    for frames, image, clip in zip(videos, images, targets):
        generated, reference, target = _tensors(frames, image, clip)
        metric.score(generated, reference=reference, target=target, **extra)
    scores = {}
    for key, value in metric.score.compute().items():
        scores[f"{metric.name}/{key}"] = float(value)
        directions[f"{metric.name}/{key}"] = metric.traits.direction(key)
    return scores
