"""flashctl built-in plugin: strong clip augmentations for the Motion Alignment Module.

Each augmentation is ``aug(video, generator) -> video`` on ``(F, C, H, W)`` floats in [-1, 1]: its
random parameters are drawn once per clip and applied identically to every frame, so the motion
is untouched (``preserves_motion=True``). ``hflip`` is geometric and is registered with
``preserves_motion=False`` so it can never feed MAM. The code lives in :mod:`.transforms`.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

from pydantic import Field, model_validator

from flashctl import hookimpl
from flashctl.registry import NoOptions, Options


class _Range(Options):
    """A ``[low, high]`` range the per-clip parameter is drawn from."""

    @model_validator(mode="after")
    def _ordered(self) -> "_Range":
        for lo, hi in _range_pairs(self):
            if getattr(self, lo) > getattr(self, hi):
                raise ValueError(f"{lo} ({getattr(self, lo)}) must not exceed {hi} ({getattr(self, hi)})")
        return self


def _range_pairs(options: Options) -> list[tuple[str, str]]:
    return [(k, "max_" + k[4:]) for k in type(options).model_fields if k.startswith("min_")]


class ColorJitterOptions(Options):
    brightness: float = Field(0.4, ge=0, lt=1, description="factor drawn from [1-b, 1+b]")
    contrast: float = Field(0.4, ge=0, lt=1, description="factor drawn from [1-c, 1+c], about the clip's mean")
    saturation: float = Field(0.6, ge=0, lt=1, description="factor drawn from [1-s, 1+s]")


class HueRotateOptions(_Range):
    min_degrees: float = Field(45.0, ge=0, le=180, description="smallest rotation of the hue circle")
    max_degrees: float = Field(180.0, ge=0, le=180, description="largest rotation; the sign is random")


class PosterizeOptions(_Range):
    min_bits: int = Field(1, ge=1, le=8)
    max_bits: int = Field(3, ge=1, le=8)


class BlurOptions(_Range):
    min_sigma: float = Field(1.0, gt=0, le=16, description="gaussian sigma in pixels")
    max_sigma: float = Field(2.5, gt=0, le=16)


class NoiseOptions(Options):
    std: float = Field(0.15, gt=0, le=1, description="std of the one noise pattern added to every frame")


class TextureOptions(_Range):
    min_strength: float = Field(0.3, ge=0, le=1, description="blend weight of the texture")
    max_strength: float = Field(0.6, ge=0, le=1)
    cells: int = Field(4, ge=1, le=64, description="grid cells per side of the low-frequency pattern")


# name, function in .transforms, options model, preserves motion, summary
AUGMENTATIONS: list[tuple[str, str, type[Options], bool, str]] = [
    ("color-jitter", "color_jitter", ColorJitterOptions, True, "random brightness, contrast and saturation"),
    ("hue-rotate", "hue_rotate", HueRotateOptions, True, "rotate every colour around the grey axis"),
    ("channel-shuffle", "channel_shuffle", NoOptions, True, "permute the RGB channels (never the identity)"),
    ("grayscale", "grayscale", NoOptions, True, "replace colour by luminance"),
    ("invert", "invert", NoOptions, True, "photographic negative"),
    ("posterize", "posterize", PosterizeOptions, True, "quantise each channel to a few levels"),
    ("blur", "blur", BlurOptions, True, "gaussian blur with a per-clip sigma"),
    ("noise", "noise", NoiseOptions, True, "add one fixed gaussian noise pattern to every frame"),
    ("texture", "texture", TextureOptions, True, "blend a procedural low-frequency pattern over the clip"),
    ("hflip", "hflip", NoOptions, False, "mirror left-right (geometric: changes the motion)"),
]


def _factory(function: str) -> Callable[[Options, Any], Callable]:
    def factory(options: Options, ctx: Any) -> Callable:
        from . import transforms

        return partial(getattr(transforms, function), **options.model_dump())

    return factory


@hookimpl
def register_augmentations(register) -> None:
    for name, function, options, preserves_motion, summary in AUGMENTATIONS:
        register(name, _factory(function), options=options, summary=summary, preserves_motion=preserves_motion)
