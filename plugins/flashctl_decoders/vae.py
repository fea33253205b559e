"""The stock decoder: every latent frame through the backbone's VAE; the reference is unused."""

from __future__ import annotations

import torch

from flashctl.model.interfaces import Backbone


class VaeDecoder(torch.nn.Module):
    """No parameters of its own (``state_dict()`` is empty): the VAE is the backbone's."""

    name = "vae"
    has_weights = False

    def __init__(self) -> None:
        super().__init__()
        self.backbone: Backbone | None = None

    def attach(self, backbone: Backbone) -> None:
        self.backbone = backbone

    def decode(self, latents: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        if self.backbone is None:
            raise RuntimeError("VaeDecoder.decode before attach(backbone)")
        return self.backbone.decode_latents(latents)  # (B, F, 3, H, W)
