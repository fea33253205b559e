"""flashctl built-in plugin: latent decoders (``vae``: the backbone's stock VAE decoder;
``detail-enhance``: the Detail Enhancement Decoder, :mod:`flashctl.model.detail_decoder`, on any VAE that has an
injector: AutoencoderKL built in, a backbone plugin's own VAEs from its ``detail_decoder`` module)."""

from __future__ import annotations

from pydantic import Field, NonNegativeInt, model_validator

from flashctl import hookimpl
from flashctl.registry import NoOptions, Options


class DetailDecoderOptions(Options):
    attention_blocks: tuple[NonNegativeInt, ...] = Field(
        (0,), description="VAE decoder up blocks (0 = lowest resolution) followed by a residual cross-attention "
                          "to the reference features")
    conv_blocks: tuple[NonNegativeInt, ...] | None = Field(
        None, description="up blocks followed by a 1x1 conv over [decoder, reference] features; unset = the "
                          "highest-resolution one (the last), unless it has attention (a conv after every other up "
                          "block cost 0.09x of the VAE decode for no measurable gain: bench/ded_layouts.py)")
    heads: int = Field(1, ge=1, description="attention heads; must divide the up block's channels (one head decodes "
                                             "2x faster than four on the CPU, same held-out error: bench/ded_layouts.py)")
    kv_size: int = Field(8, ge=1, description="reference keys/values are pooled to at most this many per side (the "
                                              "attention's cost grows with its square; 8 held the held-out error of 32)")
    train_steps: int = Field(200, ge=1, description="optimizer steps when fitting the decoder")
    lr: float = Field(1e-2, gt=0, description="AdamW learning rate of the new layers (1e-2 to 2e-2 converged fastest on the tiny VAE)")
    noise_std: float = Field(0.02, ge=0, description="Gaussian noise added to the clean latents while fitting")
    batch_frames: int = Field(4, ge=1, description="(clip, frame) pairs per fitting step")

    @model_validator(mode="after")
    def _distinct_blocks(self) -> "DetailDecoderOptions":
        conv = self.conv_blocks or ()
        for key, blocks in (("attention_blocks", self.attention_blocks), ("conv_blocks", conv)):
            if len(set(blocks)) != len(blocks):
                raise ValueError(f"{key} lists an up block twice: {list(blocks)}")
        both = sorted(set(self.attention_blocks) & set(conv))
        if both:
            raise ValueError(f"up block {both[0]} is in both attention_blocks and conv_blocks; pick one")
        if not self.attention_blocks and self.conv_blocks == ():
            raise ValueError("no attention_blocks and no conv_blocks: nothing to add; use model.decoder = 'vae'")
        return self


def build_vae_decoder(options: NoOptions, ctx):
    from .vae import VaeDecoder

    return VaeDecoder()


def build_detail_decoder(options: DetailDecoderOptions, ctx):
    from flashctl.model.detail_decoder import DetailEnhanceDecoder

    return DetailEnhanceDecoder(options)


@hookimpl
def register_decoders(register) -> None:
    register("vae", build_vae_decoder, options=NoOptions,
             summary="the backbone's VAE decoder, frame by frame; no per-motion parameters")
    register("detail-enhance", build_detail_decoder, options=DetailDecoderOptions,
             summary="Detail Enhancement Decoder: the VAE decoder plus zero-initialised layers that copy "
                     "detail from the reference image; fitted per motion")
