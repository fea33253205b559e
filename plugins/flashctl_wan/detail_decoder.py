"""The Detail Enhancement Decoder on Wan's causal 3-D VAE (``AutoencoderKLWan``): its :class:`WanInjector`.

:mod:`flashctl.model.detail_decoder` finds it by the VAE's type in :data:`INJECTORS`; the injection layers,
fitting and the file format are the shared ones, so ``model.decoder = "detail-enhance"`` works on ``wan``
as on AnimateDiff.

* **Reference features.** The still image goes in as a one-frame video: the causal encoder's first chunk
  sees frame 0 alone, so its per-scale maps are exactly the features the VAE computes for the first frame
  of any clip that starts with that image. They are 2-D maps, **broadcast over time**: every decoded frame
  reads the same map. There is one reference image, not a video of them (per-frame features would have
  to be invented), it is the same choice as on AnimateDiff, where every frame queries the one reference,
  and it keeps each injection a per-frame function: it composes with the decoder's causal chunking
  (below) and a frame's injection reaches later frames only through the stock decoder's own causal convs.
* **Decoding** is ``AutoencoderKLWan._decode``'s loop: latent frame 0 alone (``first_chunk``, one video
  frame), then one latent frame at a time (four video frames each), through a cache of the causal convs'
  last inputs; this decode keeps its own cache, so the VAE's state is untouched. Forward hooks on the
  decoder's up blocks, there only for the call, add the injections to each chunk's ``(b, c, T, h, w)``
  output, flattened to ``(b*T)`` frames. Unfitted, the result is the stock decode's bit for bit.
* **Slicing**: ``runtime.vae_slicing`` decodes one video of the batch at a time, as the Wan VAE slices
  (a video's frames are decoded a latent frame at a time anyway). Tiling is not applied: like the
  AutoencoderKL DED, it decodes whole frames.
* **Fitting** cannot decode a later frame alone (a causal decoder needs the frames before it), and a whole
  clip with gradient is far too much memory at real sizes (the full-resolution maps of every frame). So each
  step decodes a window of ``ceil(batch_frames / 4)`` latent frames (four video frames each) at a random
  place in the drawn clips, after decoding the latent frames before it without gradient, which only fills the
  causal cache (truncated backpropagation: the window's loss does not reach the injections of earlier
  frames). The memory is the window's; frame 0, the reference itself, is never in the loss.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d, patchify, unpatchify
from einops import rearrange
from torch import nn

from flashctl.model.detail_decoder import FitBatch, Inject


@contextmanager
def _after_each(modules: list[nn.Module], fn: Callable[[int, torch.Tensor], torch.Tensor | None]) -> Iterator[None]:
    """Within the block, ``fn(index, output)`` runs after each of ``modules``' forwards; a tensor it returns
    replaces the output."""
    handles = [m.register_forward_hook(lambda _m, _args, out, i=i: fn(i, out)) for i, m in enumerate(modules)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class _DeepEnough(Exception):
    """Raised inside the encoder once the features asked for are kept: the rest of it need not run."""


def _causal_convs(module: nn.Module) -> int:
    """How many cache slots a feature cache of ``module`` needs (one per causal conv)."""
    return sum(isinstance(m, WanCausalConv3d) for m in module.modules())


class WanInjector:
    """The VAE-specific half of the DED for ``AutoencoderKLWan`` (see the module docstring)."""

    def __init__(self, vae: AutoencoderKLWan) -> None:
        self.vae = vae
        self.up_blocks = len(vae.decoder.up_blocks)
        self.spatial_factor = int(vae.config.scale_factor_spatial)
        self.temporal_factor = int(vae.config.scale_factor_temporal)  # video frames per latent frame after the first
        self.recomputable = False  # the up blocks update the causal frame cache in place: a rerun reads the wrong state
        z = vae.config.z_dim
        self._mean = torch.tensor(vae.config.latents_mean).view(1, z, 1, 1, 1)  # (1, c, 1, 1, 1)
        self._std = torch.tensor(vae.config.latents_std).view(1, z, 1, 1, 1)  # (1, c, 1, 1, 1)

    def encoder_features(self, image: torch.Tensor, depth: int | None = None) -> list[torch.Tensor]:
        """(B, 3, H, W) -> [(B, c_i, h_i, w_i)] after conv_in, each down block and the mid block, for frame 0; with
        ``depth``, only the first ``depth`` of them (the encoder stops there)."""
        vae, feats = self.vae, []
        x = image[:, :, None]  # (B, 3, 1, H, W): a one-frame video, the causal encoder's first chunk
        if vae.config.patch_size is not None:
            x = patchify(x, patch_size=vae.config.patch_size)  # (B, 3*p*p, 1, H/p, W/p)
        encoder = vae.encoder

        def keep(_i: int, out: torch.Tensor) -> None:
            feats.append(out[:, :, 0])  # (B, c_i, h_i, w_i)
            if depth is not None and len(feats) >= depth:
                raise _DeepEnough

        try:
            with _after_each([encoder.conv_in, *encoder.down_blocks, encoder.mid_block], keep):
                encoder(x, feat_cache=[None] * _causal_convs(encoder), feat_idx=[0])
        except _DeepEnough:
            pass
        return feats

    def decode(self, latents: torch.Tensor, inject: Inject, warm: int = 0) -> torch.Tensor:
        """(B, F', c, h, w) normalised latents -> (B, 4(F'-1)+1, 3, H, W), unclamped; the first ``warm`` latent
        frames without gradient."""
        if self.vae.use_slicing and latents.shape[0] > 1:  # runtime.vae_slicing: a video at a time, as the VAE
            return torch.cat([self.decode_videos(latents[i:i + 1], inject, slice(i, i + 1), warm)
                              for i in range(latents.shape[0])])
        return self.decode_videos(latents, inject, slice(None), warm)

    def decode_videos(self, latents: torch.Tensor, inject: Inject, rows: slice, warm: int = 0) -> torch.Tensor:
        """Decode the videos ``rows`` of the batch, ``(b, F', c, h, w)`` -> ``(b, F, 3, H, W)``."""
        vae = self.vae
        z = rearrange(latents, "b f c h w -> b c f h w")
        x = vae.post_quant_conv(z * self._std.to(z) + self._mean.to(z))  # (b, c, F', h, w), as the backbone decodes

        def injected(block: int, out: torch.Tensor) -> torch.Tensor:  # out (b, c_i, T, h_i, w_i), T = 1 or 2 or 4
            frames = rearrange(out, "b c t h w -> (b t) c h w")  # (b*T, c_i, h_i, w_i), batch-major
            return rearrange(inject(block, frames, rows), "(b t) c h w -> b c t h w", t=out.shape[2])

        cache, chunks = [None] * _causal_convs(vae.decoder), []
        with _after_each(list(vae.decoder.up_blocks), injected):
            for i in range(x.shape[2]):  # one latent frame at a time, through the causal cache
                with torch.set_grad_enabled(torch.is_grad_enabled() and i >= warm):
                    chunks.append(vae.decoder(x[:, :, i:i + 1], feat_cache=cache, feat_idx=[0], first_chunk=i == 0))
        video = torch.cat(chunks, dim=2)  # (b, 3[*p*p], F, H[/p], W[/p])
        if vae.config.patch_size is not None:
            video = unpatchify(video, patch_size=vae.config.patch_size)  # (b, 3, F, H, W)
        return rearrange(video, "b c f h w -> b f c h w")

    def fit_batch(self, latents: torch.Tensor, clips: torch.Tensor, frames: int,
                  generator: torch.Generator) -> FitBatch:
        """A window of latent frames (past frame 0) in enough clips for about ``frames`` target frames."""
        n, latent_frames, step = clips.shape[0], latents.shape[1], self.temporal_factor
        span = min(latent_frames - 1, -(-frames // step))  # latent frames with gradient, `step` video frames each
        idx = torch.randint(0, n, (max(1, -(-frames // (step * span))),), generator=generator)  # (K,)
        start = int(torch.randint(1, latent_frames - span + 1, (1,), generator=generator))  # first latent frame in it
        end = start + span
        return FitBatch(idx, latents[idx, :end], clips[idx, :step * (end - 1) + 1],  # (K, end, ...), (K, F_end, ...)
                        slice(step * (start - 1) + 1, None), warm=start)


INJECTORS = {AutoencoderKLWan: WanInjector}  # VAE class -> injector, read by flashctl.model.detail_decoder
