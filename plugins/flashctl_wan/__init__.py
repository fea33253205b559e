"""flashctl built-in plugin: the Wan backbone (`wan`), a video DiT trained with flow matching.

Wan's ``WanTransformer3DModel`` runs full 3-D self-attention over (latent frames x tokens per frame),
its ``AutoencoderKLWan`` is a causal 3-D VAE that compresses time 4x, so a clip must have 4k+1
frames (5, 9, 13, 17, ...: latent frames = (F - 1) / 4 + 1). Image conditioning is
Wan2.2-TI2V-style: the reference's latent is latent frame 0, clean, with timestep 0 on its tokens;
that is flashctl's LAMP-style frame 0 (kept clean, outside the loss), so no image encoder is needed.
See :mod:`flashctl_wan.backbone` and, for the Motion Alignment Module on 3-D attention,
:mod:`flashctl_wan.mam`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from flashctl import hookimpl
from flashctl.registry import Options


class WanOptions(Options):
    preset: Literal["tiny"] = Field("tiny", description="tiny: random weights from the small configs below, "
                                                        "offline, for tests and the CPU")
    shift: float = Field(3.0, gt=0, description="flow-matching shift towards high noise (Wan: 3 at 480p, 5 at 720p)")
    text_len: int = Field(32, ge=2, description="prompt tokens (padded; Wan uses 512)")
    # tiny preset geometry
    heads: int = Field(2, ge=1, description="tiny: transformer attention heads")
    head_dim: int = Field(16, ge=6, multiple_of=2, description="tiny: width of a head (split three ways by 3-D RoPE)")
    layers: int = Field(2, ge=1, description="tiny: transformer blocks")
    ffn_dim: int = Field(64, ge=1, description="tiny: feed-forward width")
    text_dim: int = Field(32, ge=8, multiple_of=4, description="tiny: UMT5 text encoder width (4 heads)")
    vae_dim: int = Field(16, ge=4, description="tiny: VAE base width")
    vae_levels: int = Field(3, ge=3, description="tiny: VAE levels; spatial downsample = 2**(levels-1), time 4x")
    latent_channels: int = Field(4, ge=1, description="tiny: VAE latent channels (Wan2.1: 16, Wan2.2: 48)")
    init_seed: int = Field(0, description="tiny: seed of the random base weights")


@hookimpl
def register_backbones(register) -> None:
    def build(options: WanOptions, ctx):  # torch and diffusers load only when a Wan backbone is built
        from .backbone import build_backbone

        return build_backbone(options, ctx)

    register("wan", build, options=WanOptions,
             summary="Wan DiT (3-D attention, causal 3-D VAE, 4k+1 frames), UMT5 text, flow matching, "
                     "Wan2.2-TI2V-style first-frame latent")
