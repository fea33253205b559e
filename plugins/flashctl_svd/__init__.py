"""flashctl built-in plugin: the Stable Video Diffusion backbone (`svd`), image-conditioned only.

SVD conditions on the reference image, not on text: its CLIP image embedding (cross-attention)
and its latent, concatenated to every frame's noisy latent (8 input channels). The action prompt
is ignored except that the empty prompt selects SVD's unconditional branch for guidance. See
:mod:`flashctl_svd.backbone` for the conditioning and :mod:`flashctl_svd.schedule` for how SVD's
EDM noise levels fit flashctl's DDPM-style training loss and samplers.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from flashctl import hookimpl
from flashctl.registry import Options

SVD_BASE = "stabilityai/stable-video-diffusion-img2vid-xt"
GROUPS = 32  # the SVD U-Net and temporal VAE hard-code GroupNorm(32)


class SVDOptions(Options):
    preset: Literal["tiny", "svd"] = Field("tiny", description="tiny: random weights for tests and CPU; svd: real")
    base: str | None = Field(None, description=f"svd: folder or hub id with unet/ vae/ image_encoder/ "
                                               f"feature_extractor/ (default {SVD_BASE})")
    fps: int = Field(7, ge=1, description="frame rate the video is conditioned on (passed as fps - 1, as SVD "
                                          "was trained)")
    motion_bucket_id: int = Field(127, ge=0, description="SVD's amount-of-motion conditioning")
    noise_aug_strength: float = Field(0.02, ge=0, description="noise-augmentation level SVD is told its "
                                                              "conditioning latent has")
    sigma_min: float = Field(0.002, gt=0, description="lowest noise level of the schedule (SVD: 0.002)")
    sigma_max: float = Field(700.0, gt=0, description="highest noise level of the schedule (SVD: 700)")
    # tiny preset geometry
    channels: tuple[int, ...] = Field((32, 64), min_length=2, description="tiny: U-Net block widths, multiples of 32")
    vae_channels: tuple[int, ...] = Field((32, 32, 32), min_length=1,
                                          description="tiny: VAE block widths, multiples of 32; "
                                                      "downsample = 2**(len-1)")
    embed_dim: int = Field(32, ge=8, multiple_of=4, description="tiny: CLIP image embedding width")
    init_seed: int = Field(0, description="tiny: seed of the random base weights")

    @field_validator("channels", "vae_channels")
    @classmethod
    def _group_norm(cls, widths: tuple[int, ...]) -> tuple[int, ...]:
        if any(w <= 0 or w % GROUPS for w in widths):
            raise ValueError(f"every width must be a positive multiple of {GROUPS} (GroupNorm groups), "
                             f"got {list(widths)}")
        return widths

    @model_validator(mode="after")
    def _sigma_range(self) -> "SVDOptions":
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"sigma_min ({self.sigma_min}) must be below sigma_max ({self.sigma_max})")
        return self


def build_svd(options: SVDOptions, ctx):
    from .backbone import build_backbone

    return build_backbone(options, ctx)


@hookimpl
def register_backbones(register) -> None:
    register("svd", build_svd, options=SVDOptions,
             summary="Stable Video Diffusion U-Net, image-conditioned (CLIP image + reference latent), "
                     "cross-frame attention, LAMP-style first frame")
