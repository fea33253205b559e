"""What every U-Net + image-VAE backbone shares: device and dtype from the denoiser, VAE encoding of videos."""

from __future__ import annotations

import torch
from einops import rearrange


class LatentVideoBackbone:
    """Base for backbones with ``self.unet`` and a per-frame encoding ``self.vae`` (AnimateDiff, SVD)."""

    unet: torch.nn.Module
    vae: torch.nn.Module

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @torch.no_grad()
    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """(B, F, 3, H, W) in [-1, 1] -> (B, F, c, h, w) scaled latents (the posterior's mode, frame by frame)."""
        b = video.shape[0]
        frames = rearrange(video, "b f c h w -> (b f) c h w").to(self.device, self.vae.dtype)
        latents = self.vae.encode(frames).latent_dist.mode() * self.vae.config.scaling_factor  # (B*F, c, h, w)
        return rearrange(latents, "(b f) c h w -> b f c h w", b=b)
