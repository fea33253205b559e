"""flashctl built-in plugin: the Wan backbone (`wan`), a video DiT trained with flow matching.

Wan's ``WanTransformer3DModel`` runs full 3-D self-attention over (latent frames x tokens per frame),
its ``AutoencoderKLWan`` is a causal 3-D VAE that compresses time 4x, so a clip must have 4k+1
frames (5, 9, 13, 17, ..., 81: latent frames = (F - 1) / 4 + 1). Presets:

* ``tiny``: random weights from small configs, offline, for tests and the CPU; Wan2.2-TI2V-style image
  conditioning (the reference's latent is latent frame 0, clean, timestep 0 on its tokens).
* ``wan2.2-ti2v``: a Wan2.2-TI2V-5B-Diffusers folder; the same first-frame latent conditioning
  (``expand_timesteps``), its 48-channel VAE (patch 2, 16x spatial compression).
* ``wan2.1-i2v``: a Wan2.1-I2V-14B-480P/720P-Diffusers folder; 36 input channels (noisy latents ++ a 4-channel
  first-frame mask ++ the latents of [reference, black frames]) and the reference's CLIP image tokens, as
  ``WanImageToVideoPipeline`` builds them.

See :mod:`flashctl_wan.backbone`, :mod:`flashctl_wan.presets` and, for the Motion Alignment Module on 3-D
attention, :mod:`flashctl_wan.mam`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from flashctl import hookimpl
from flashctl.registry import Options


WAN21_I2V, WAN22_TI2V = "wan2.1-i2v", "wan2.2-ti2v"
HUB_IDS = {WAN21_I2V: "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", WAN22_TI2V: "Wan-AI/Wan2.2-TI2V-5B-Diffusers"}
TINY_TEXT_LEN = 32
WAN_TEXT_LEN = 512  # Wan's prompt length; Wan2.1-I2V's image cross-attention splits its context 512 from the end


class WanOptions(Options):
    preset: Literal["tiny", "wan2.1-i2v", "wan2.2-ti2v"] = Field(
        "tiny", description="tiny: random weights from the small configs below, offline, for tests and the CPU; "
                            "wan2.1-i2v: a Wan2.1-I2V-14B-480P/720P-Diffusers folder (CLIP image encoder, 36-channel "
                            "input; 480p: 832x480, 720p: 1280x720); wan2.2-ti2v: a Wan2.2-TI2V-5B-Diffusers folder "
                            "(first-frame latent, 48-channel VAE; 1280x704). Frames: 4k+1 (Wan's own: 81). "
                            "prepare makes square clips: pick prepare.size a multiple of 16 (wan2.1-i2v) or 32 "
                            "(wan2.2-ti2v), e.g. 480 or 704")
    base: str | None = Field(None, description=f"real presets: a local folder in the diffusers hub layout "
                                               f"(transformer/ vae/ text_encoder/ tokenizer/, and for {WAN21_I2V} "
                                               f"image_encoder/ image_processor/), or a hub id, which loads only "
                                               f"when runtime.offline = false (default {HUB_IDS[WAN21_I2V]} / "
                                               f"{HUB_IDS[WAN22_TI2V]})")
    shift: float = Field(3.0, gt=0, description="flow-matching shift towards high noise (Wan: 3 at 480p, 5 at 720p "
                                                "and for Wan2.2-TI2V-5B)")
    text_len: int | None = Field(None, ge=2, description=f"prompt tokens (padded); default 32 for tiny, "
                                                         f"{WAN_TEXT_LEN} (Wan's) for the real presets, which "
                                                         f"{WAN21_I2V} needs")
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

    @model_validator(mode="after")
    def _fits_the_preset(self) -> WanOptions:
        if self.preset == "tiny" and self.base is not None:
            raise ValueError(f"base = {self.base!r} is read by the real presets only (tiny builds random weights); "
                             f"set preset = \"{WAN21_I2V}\" or \"{WAN22_TI2V}\", or remove base")
        if self.preset == WAN21_I2V and self.text_len not in (None, WAN_TEXT_LEN):
            raise ValueError(f"text_len = {self.text_len} does not fit {WAN21_I2V}: its image cross-attention takes "
                             f"the last {WAN_TEXT_LEN} context tokens as the prompt; remove text_len or set "
                             f"{WAN_TEXT_LEN}")
        return self

    @property
    def prompt_tokens(self) -> int:
        """``text_len``, or the preset's default (32 tiny, 512 real)."""
        return self.text_len or (TINY_TEXT_LEN if self.preset == "tiny" else WAN_TEXT_LEN)


@hookimpl
def register_backbones(register) -> None:
    def build(options: WanOptions, ctx):  # torch and diffusers load only when a Wan backbone is built
        from .backbone import build_backbone

        return build_backbone(options, ctx)

    register("wan", build, options=WanOptions,
             summary="Wan DiT (3-D attention, causal 3-D VAE, 4k+1 frames), UMT5 text, flow matching; presets "
                     "tiny, wan2.1-i2v (CLIP image + concatenated latents), wan2.2-ti2v (first-frame latent)")
