"""flashctl built-in plugin: evaluation metrics (METHOD.md, "Evaluation").

Each metric is ``metric(generated, *, reference, target=None) -> dict[str, float]`` with
``generated``/``target`` ``(F, C, H, W)`` and ``reference`` ``(C, H, W)``, floats in [-1, 1].
``higher_is_better`` maps every key a metric returns to its direction; ``requires_target`` marks
metrics that need the real continuation and return ``{}`` without one. Pure torch: the code lives
in :mod:`.reference` (comparisons with the reference image) and :mod:`.temporal` (the video over time).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

from pydantic import Field, field_validator

from flashctl import hookimpl
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


# name, (module, function), options model, higher_is_better per key, requires target, summary
METRICS: list[tuple[str, tuple[str, str], type[Options], dict[str, bool], bool, str]] = [
    ("first-frame", ("reference", "first_frame"), FirstFrameOptions, {"psnr": True, "ssim": True}, False,
     "PSNR and SSIM between the reference image and generated frame 0"),
    ("smoothness", ("temporal", "smoothness"), NoOptions, {"jump": False, "first_change": False}, False,
     "frame 0->1 change over the median frame-to-frame change (1 = smooth start)"),
    ("temporal-consistency", ("temporal", "temporal_consistency"), NoOptions,
     {"similarity": True, "flicker": False}, False,
     "consecutive-frame similarity and high-frequency temporal energy (flicker)"),
    ("motion-fidelity", ("temporal", "motion_fidelity"), MotionFidelityOptions,
     {"map_similarity": True, "energy_ratio": True}, True,
     "agreement of motion-energy maps with the real continuation (needs a target)"),
    ("appearance", ("reference", "appearance"), AppearanceOptions,
     {"histogram_mean": True, "histogram_min": True}, False,
     "colour-histogram intersection between the reference and every generated frame"),
]


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
