"""What the pipelines expect from a backbone and a decoder (structural protocols).

A backbone owns the denoiser, VAE, text encoder and scheduler config; it hides its tensor
layout behind :meth:`Backbone.denoise`, so the training loss and sampler in
:mod:`flashctl.model.flash` work for any video latent diffusion model. Videos are
``(B, F, 3, H, W)`` floats in [-1, 1]; latents ``(B, F, c, h, w)``, already scaled. A backbone whose VAE
compresses time (a causal 3-D VAE: F video frames -> fewer latent frames) also has
``latent_frames(frames: int) -> int``, which :func:`flashctl.model.flash.sample` uses to size the latents.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from .objectives import Objective


@runtime_checkable
class Backbone(Protocol):
    name: str
    unet: torch.nn.Module
    vae: torch.nn.Module
    objective: Objective  # how it is trained and sampled (flashctl.model.objectives)
    # regexes (re.fullmatch over module names) that motion LoRA wraps
    lora_targets: list[str]
    # attention-processor names, for processors that extend cross-frame / temporal attention (MAM)
    spatial_attention: list[str]
    temporal_attention: list[str]

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """(B,) prompts -> (B, seq, dim) text embeddings."""

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """(B, F, 3, H, W) in [-1, 1] -> (B, F, c, h, w) scaled latents."""

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, F, c, h, w) scaled latents -> (B, F, 3, H, W) in [-1, 1]."""

    def denoise(self, latents: torch.Tensor, timestep: torch.Tensor, prompt_emb: torch.Tensor) -> torch.Tensor:
        """Model output (epsilon or v) for noisy ``(B, F, c, h, w)`` latents at ``timestep`` ``(B,)``."""

    def geometry(self) -> dict[str, Any]:
        """What a motion's weights depend on: backbone, preset, base id + config hash, latent geometry."""

    def save_pretrained(self, path: Path) -> Path:
        """Dump the base weights in the layout this backbone loads from (interop tests, mirrors)."""


@runtime_checkable
class Decoder(Protocol):
    """Latents + the user's reference image -> frames. ``has_weights``: per-motion parameters (DED)."""

    name: str
    has_weights: bool

    def attach(self, backbone: Backbone) -> None:
        """Bind to the backbone whose VAE the decoder uses; called once after both are built."""

    def decode(self, latents: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """(B, F, c, h, w) latents, (B, 3, H, W) reference in [-1, 1] -> (B, F, 3, H, W) in [-1, 1]."""
