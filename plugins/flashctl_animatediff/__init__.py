"""flashctl built-in plugin: the AnimateDiff backbone (UNetMotionModel + AutoencoderKL + CLIP text)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from flashctl import hookimpl
from flashctl.registry import Options

SD15_BASE = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SD15_MOTION_ADAPTER = "guoyww/animatediff-motion-adapter-v1-5-2"
TINY_SHIPPED = "shipped"  # tiny base= value naming weights/tiny-base/ inside this package


class AnimateDiffOptions(Options):
    preset: Literal["tiny", "sd15"] = Field("tiny", description="tiny: random weights for tests and CPU; sd15: real")
    base: str | None = Field(None, description=f"sd15: folder or hub id with unet/ vae/ text_encoder/ tokenizer/ "
                                               f"(default {SD15_BASE}); tiny: a folder that save_pretrained "
                                               f"wrote (also motion_adapter/), or '{TINY_SHIPPED}' for the "
                                               f"pretrained base shipped in this package; unset = random weights "
                                               f"from the geometry below")
    motion_adapter: str | None = Field(None, description=f"sd15: MotionAdapter folder or hub id "
                                                         f"(default {SD15_MOTION_ADAPTER})")
    prediction_type: Literal["epsilon", "v_prediction"] = "epsilon"
    target: Literal["latent", "residual"] = Field(
        "latent", description="residual: later frames are diffused as their difference from frame 0 (the "
                              "reference); learns far faster from scratch; motions trained on one refuse the other")
    lora_feed_forward: bool = Field(True, description="the motion LoRA also wraps the motion modules' feed-forward "
                                                      "layers (measured better on every demo action: "
                                                      "docs/results.md); false = temporal attention only")
    # tiny preset geometry (ignored when base= names pretrained weights: their configs rule)
    channels: tuple[int, ...] = Field((32, 64), min_length=2, description="tiny: U-Net block widths")
    vae_channels: tuple[int, ...] = Field((16, 32, 32), min_length=1,
                                          description="tiny: VAE block widths; downsample = 2**(len-1)")
    text_dim: int = Field(32, ge=8, multiple_of=4, description="tiny: text embedding width")
    init_seed: int = Field(0, description="tiny: seed of the random base weights")


def build_animatediff(options: AnimateDiffOptions, ctx):
    from .backbone import build_backbone

    return build_backbone(options, ctx)


@hookimpl
def register_backbones(register) -> None:
    register("animatediff", build_animatediff, options=AnimateDiffOptions,
             summary="AnimateDiff U-Net (SD1.5 + motion modules), cross-frame attention, LAMP-style first frame")
