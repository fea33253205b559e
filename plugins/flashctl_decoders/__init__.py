"""flashctl built-in plugin: latent decoders (``vae``: the backbone's stock VAE decoder)."""

from __future__ import annotations

from flashctl import hookimpl
from flashctl.registry import NoOptions


def build_vae_decoder(options: NoOptions, ctx):
    from .vae import VaeDecoder

    return VaeDecoder()


@hookimpl
def register_decoders(register) -> None:
    register("vae", build_vae_decoder, options=NoOptions,
             summary="the backbone's VAE decoder, frame by frame; no per-motion parameters")
