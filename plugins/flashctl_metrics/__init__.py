"""flashctl built-in plugin: evaluation metrics (METHOD.md, "Evaluation").

Each metric is ``metric(generated, *, reference, target=None) -> dict[str, float]`` with
``generated``/``target`` ``(F, C, H, W)`` and ``reference`` ``(C, H, W)``, floats in [-1, 1].
``higher_is_better`` maps every key a metric returns to its direction; ``requires_target`` marks
metrics that need the real continuation and return ``{}`` without one. A direction is ``True``,
``False``, ``NEAR_ONE`` (a ratio to the real clip, 1.0 best) or ``None``: see :mod:`flashctl.directions`.
Pure torch: the code lives in :mod:`.reference` (comparisons with the reference image),
:mod:`.temporal` (the video over time), :mod:`.transition` (leaving the reference, relative to the
real clip) and :mod:`.motion_track` (optical flow, :mod:`.flow`, against the real clip's).

The weight-based metrics load local weights named by ``options.metric.<name>.weights`` at factory
time and never download: :mod:`.clip_score`, :mod:`.lpips`, :mod:`.fvd` (whose module docstrings give
the expected file layouts), and :mod:`.pose` (MediaPipe, the optional ``flashctl[pose]`` extra).
``clip-score`` (``accepts_prompt=True``) also takes a ``prompt=`` keyword; ``fvd`` (``aggregate=True``)
returns ``{}`` per sample and its score from ``compute()`` after the last one.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

from pydantic import Field, field_validator

from flashctl import hookimpl
from flashctl.directions import NEAR_ONE, Direction
from flashctl.registry import NoOptions, Options


class FirstFrameOptions(Options):
    ssim_window: int = Field(11, ge=3, le=63, description="side of the gaussian SSIM window (odd)")
    ssim_sigma: float = Field(1.5, gt=0, le=16, description="sigma of the gaussian SSIM window")
    max_psnr: float = Field(100.0, gt=0, description="PSNR reported for identical images")

    @field_validator("ssim_window")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"must be odd, e.g. {value + 1}")
        return value


class MotionFidelityOptions(Options):
    grid: int = Field(8, ge=1, le=64, description="motion-energy maps are pooled to grid x grid cells")


class AppearanceOptions(Options):
    bins: int = Field(8, ge=2, le=32, description="histogram bins per colour channel")


class MotionTrackOptions(Options):
    grid: int = Field(8, ge=1, le=64, description="optical flow is averaged over grid x grid cells before comparing")


# name, (module, function), options model, direction per key, requires target, summary
METRICS: list[tuple[str, tuple[str, str], type[Options], dict[str, Direction], bool, str]] = [
    ("first-frame", ("reference", "first_frame"), FirstFrameOptions, {"psnr": True, "ssim": True}, False,
     "PSNR and SSIM between the reference image and generated frame 0"),
    ("smoothness", ("temporal", "smoothness"), NoOptions,
     {"jump": False, "first_change": False, "jump_ratio": NEAR_ONE}, False,
     "frame 0->1 change over the median frame-to-frame change (1 = smooth start); with a target, over the real clip's"),
    ("temporal-consistency", ("temporal", "temporal_consistency"), NoOptions,
     {"similarity": True, "flicker": False, "change_ratio": NEAR_ONE, "flicker_ratio": NEAR_ONE}, False,
     "consecutive-frame similarity and temporal flicker; with a target, both over the real clip's"),
    ("transition", ("transition", "transition"), AppearanceOptions, {"first_step": NEAR_ONE, "drift": NEAR_ONE}, True,
     "frame 0->1 change and colour drift from the reference, over the real clip's (needs a target)"),
    ("motion-track", ("motion_track", "motion_track"), MotionTrackOptions,
     {"correlation": True, "gain": NEAR_ONE}, True,
     "optical flow vs the real continuation's: agreement in direction, place and time, and size (needs a target)"),
    ("motion-fidelity", ("temporal", "motion_fidelity"), MotionFidelityOptions,
     {"map_similarity": True, "energy_ratio": True}, True,
     "agreement of motion-energy maps with the real continuation (needs a target)"),
    ("appearance", ("reference", "appearance"), AppearanceOptions,
     {"histogram_mean": True, "histogram_min": True}, False,
     "colour-histogram intersection between the reference and every generated frame"),
]


class WeightsOptions(Options):
    weights: str | None = Field(None, description="local folder with the metric's weights (nothing is downloaded)")


class ClipScoreOptions(WeightsOptions):
    prompt: str | None = Field(None, description="text the frames are scored against; unset: the action's prompt, "
                                                 "when the caller passes one")


class FvdOptions(WeightsOptions):
    size: int = Field(224, ge=8, le=1024, description="frames are resized to size x size for the video net")


class PoseOptions(Options):
    visibility: float = Field(0.5, ge=0, le=1, description="a landmark counts when its visibility is at least this")
    min_detection_confidence: float = Field(0.5, ge=0, le=1, description="MediaPipe person-detection threshold")


# name, module (with build(options, ctx)), options model, higher_is_better per key, requires target, more traits, summary
WEIGHT_METRICS: list[tuple[str, str, type[Options], dict[str, bool], bool, dict[str, Any], str]] = [
    ("clip-score", "clip_score", ClipScoreOptions, {"image_mean": True, "image_min": True, "text": True}, False,
     {"accepts_prompt": True}, "CLIP similarity of every frame with the reference image and the prompt (local weights)"),
    ("lpips", "lpips", WeightsOptions, {"first_frame": False, "flicker": False}, False, {},
     "LPIPS (VGG16) reference vs frame 0 and between consecutive frames (local weights)"),
    ("fvd", "fvd", FvdOptions, {"fvd": False}, True, {"aggregate": True},
     "Frechet video distance of generated vs real clips over the whole eval set (local weights)"),
    ("pose", "pose", PoseOptions, {"joint_error": False, "motion_correlation": True, "detected": True}, True, {},
     "MediaPipe pose trajectories vs the real continuation (pip install 'flashctl[pose]')"),
]


def _builder(module: str) -> Callable[[Options, Any], Any]:
    def factory(options: Options, ctx: Any) -> Any:
        from importlib import import_module

        return import_module(f"{__name__}.{module}").build(options, ctx)

    return factory


def _factory(module: str, function: str) -> Callable[[Options, Any], Callable]:
    def factory(options: Options, ctx: Any) -> Callable:
        from importlib import import_module

        return partial(getattr(import_module(f"{__name__}.{module}"), function), **options.model_dump())

    return factory


@hookimpl
def register_metrics(register) -> None:
    for name, (module, function), options, directions, requires_target, summary in METRICS:
        register(name, _factory(module, function), options=options, summary=summary,
                 higher_is_better=directions, requires_target=requires_target)
    for name, module, options, directions, requires_target, traits, summary in WEIGHT_METRICS:
        register(name, _builder(module), options=options, summary=summary,
                 higher_is_better=directions, requires_target=requires_target, **traits)
