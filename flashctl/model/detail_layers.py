"""The Detail Enhancement Decoder's injection layers: residual, zero-initialised, per frame.

Each reads a decoder feature map ``x`` (every frame of a video, ``(B*F, c, h, w)``, batch-major) and the
reference image's encoder feature map of the same resolution ``ref`` ``(B, c_ref, h, w)``; the last layer
starts at zero, so an untrained injection returns ``x`` exactly. :mod:`flashctl.model.detail_decoder`
places them after the VAE decoder's up blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class ReferenceCrossAttention(nn.Module):
    """Residual cross-attention: every frame's decoder features attend to the reference features.

    Keys and values come from the reference feature map, average-pooled to at most ``kv_size`` per
    side (the cost of attention); the output projection starts at zero.
    """

    def __init__(self, channels: int, ref_channels: int, heads: int, kv_size: int) -> None:
        super().__init__()
        self.heads, self.kv_size = heads, kv_size
        self.norm_q = nn.LayerNorm(channels)
        self.norm_kv = nn.LayerNorm(ref_channels)
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_k = nn.Linear(ref_channels, channels, bias=False)
        self.to_v = nn.Linear(ref_channels, channels, bias=False)
        self.to_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def forward(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """``x`` (B*F, c, h, w) decoder features, ``ref`` (B, c_ref, h, w) -> (B*F, c, h, w)."""
        b, (h, w) = ref.shape[0], x.shape[-2:]
        if max(ref.shape[-2:]) > self.kv_size:
            ref = F.adaptive_avg_pool2d(ref, (min(h, self.kv_size), min(w, self.kv_size)))  # (B, c_ref, h', w')
        # all frames of a video query the same reference at once: queries are independent
        tokens = rearrange(x, "(b f) c h w -> b (f h w) c", b=b)  # (B, F*h*w, c)
        kv = self.norm_kv(rearrange(ref, "b c h w -> b (h w) c"))  # (B, h'*w', c_ref)
        q = rearrange(self.to_q(self.norm_q(tokens)), "b n (m d) -> b m n d", m=self.heads)  # (B, heads, F*h*w, d)
        k = rearrange(self.to_k(kv), "b n (m d) -> b m n d", m=self.heads)  # (B, heads, h'*w', d)
        v = rearrange(self.to_v(kv), "b n (m d) -> b m n d", m=self.heads)  # (B, heads, h'*w', d)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, F*h*w, d)
        out = self.to_out(rearrange(out, "b m n d -> b n (m d)"))  # (B, F*h*w, c)
        return x + rearrange(out, "b (f h w) c -> (b f) c h w", h=h, w=w)


class ReferenceConcatConv(nn.Module):
    """Residual zero-initialised 1x1 conv over the concatenation [decoder features, reference features].

    Both inputs are normalised first (per map, over channels and pixels): decoder and encoder features
    differ in scale by an order of magnitude, which a zero-initialised layer would otherwise spend most
    of its fitting steps catching up with.
    """

    def __init__(self, channels: int, ref_channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(1, channels)
        self.norm_ref = nn.GroupNorm(1, ref_channels)
        self.proj = nn.Conv2d(channels + ref_channels, channels, kernel_size=1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """``x`` (B*F, c, h, w) decoder features, ``ref`` (B, c_ref, h, w) -> (B*F, c, h, w)."""
        # .contiguous(): the VAE hands out channels_last maps, and torch 2.13's CPU GroupNorm backward
        # segfaults on a channels_last input that needs no grad while the norm's weight does
        ref = self.norm_ref(ref.contiguous())  # (B, c_ref, h, w)
        ref = ref.repeat_interleave(x.shape[0] // ref.shape[0], dim=0)  # (B*F, c_ref, h, w)
        return x + self.proj(torch.cat([self.norm(x.contiguous()), ref], dim=1))  # (B*F, c, h, w)


def resized(feature: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, c, h', w') -> (B, c, *size); a no-op when the sizes already match."""
    if tuple(feature.shape[-2:]) == tuple(size):
        return feature
    return F.interpolate(feature, size=size, mode="bilinear", align_corners=False)
