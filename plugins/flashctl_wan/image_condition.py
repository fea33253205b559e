"""Wan2.1-I2V's image conditioning, built from a reference latent the way ``WanImageToVideoPipeline`` builds it.

For a video of ``F = 4(F'-1)+1`` frames whose frame 0 is the reference image the transformer gets

* 36 input channels: the noisy latents (16) ++ a first-frame mask (4: one per video frame a latent frame
  holds; ones at latent frame 0, zeros after) ++ the normalised latents of ``[reference, F-1 black frames]``
  (16; black = 0 in [-1, 1], as the pipeline pads), all over ``F'`` latent frames;
* the reference's CLIP image tokens (the vision model's second-to-last hidden states, ``(B, 257, 1280)`` for
  ViT-H/14), which every block's ``attn2`` attends to beside the prompt (``encoder_hidden_states_image``).

``denoise`` only sees latents, so the reference image is the VAE decoding of latent frame 0 (a still's
latent is exactly a clip's frame 0 under the causal VAE). It is resized to the image processor's crop size
with torch (bicubic, antialiased: flashctl's clips are square, so no crop is needed) and normalised with its
mean and std. Both are computed without gradients and cached while the reference and frame count stay the
same (every step of one sampling run).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange

MASK_CHANNELS = 4  # the VAE's temporal compression: one mask channel per video frame of a latent frame


def first_frame_mask(like: torch.Tensor) -> torch.Tensor:
    """``(B, F', c, h, w)`` latents -> ``(B, 4, F', h, w)`` mask: ones on latent frame 0 (the reference), else 0."""
    b, frames, _, h, w = like.shape
    mask = torch.zeros(b, MASK_CHANNELS, frames, h, w, device=like.device, dtype=like.dtype)
    mask[:, :, 0] = 1.0
    return mask


class ImageCondition:
    """The reference's condition channels and CLIP image tokens for a Wan2.1-I2V transformer, cached."""

    def __init__(self, image_encoder: torch.nn.Module, image_processor: Any) -> None:
        self.image_encoder = image_encoder
        crop = image_processor.crop_size
        self.side = (int(crop["height"]), int(crop["width"]))
        self.mean = torch.tensor(image_processor.image_mean).view(1, 3, 1, 1)  # (1, 3, 1, 1)
        self.std = torch.tensor(image_processor.image_std).view(1, 3, 1, 1)  # (1, 3, 1, 1)
        self._cache: tuple[torch.Tensor, int, torch.Tensor, torch.Tensor] | None = None

    @torch.no_grad()
    def image_tokens(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [-1, 1] -> ``(B, n, dim)``: the CLIP vision model's second-to-last hidden states."""
        pixels = F.interpolate(image.float(), size=self.side, mode="bicubic", align_corners=False, antialias=True)
        pixels = ((pixels + 1) / 2).clamp(0, 1)  # (B, 3, side, side) in [0, 1], as the processor rescales
        pixels = (pixels - self.mean.to(pixels.device)) / self.std.to(pixels.device)
        out = self.image_encoder(pixel_values=pixels.to(self.image_encoder.dtype), output_hidden_states=True)
        return out.hidden_states[-2]  # (B, n, dim)

    @torch.no_grad()
    def __call__(self, backbone: Any, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, F', c, h, w)`` latents whose frame 0 is the reference -> condition ``(B, 4 + c, F', h, w)`` and
        image tokens ``(B, n, dim)``."""
        reference, frames = latents[:, 0], latents.shape[1]  # (B, c, h, w)
        cached = self._cache
        if (cached is not None and cached[1] == frames and cached[0].shape == reference.shape
                and torch.equal(cached[0], reference)):
            return cached[2], cached[3]
        image = backbone.decode_latents(reference[:, None])[:, 0]  # (B, 3, H, W) in [-1, 1]
        black = image.new_zeros(image.shape[0], (frames - 1) * MASK_CHANNELS, *image.shape[1:])  # (B, F-1, 3, H, W)
        padded = backbone.encode_video(torch.cat([image[:, None], black], dim=1))  # (B, F', c, h, w), normalised
        condition = torch.cat([first_frame_mask(padded), rearrange(padded, "b f c h w -> b c f h w")], dim=1)
        tokens = self.image_tokens(image)  # (B, n, dim)
        self._cache = (reference.clone(), frames, condition, tokens)
        return condition, tokens
