"""The Detail Enhancement Decoder's injection layers: residual, zero-initialised, per frame.

Each reads a decoder feature map ``x`` (every frame of a video, ``(B*F, c, h, w)``, batch-major) and what
:meth:`reference` made, once per decode, of the reference image's encoder feature map of the same resolution
``(B, c_ref, h, w)`` (batch first, so a slice of videos slices it): ``layer(x, layer.reference(ref))``. The
last layer starts at zero, so an untrained injection returns ``x`` exactly. :mod:`flashctl.model.detail_decoder`
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

    def reference(self, ref: torch.Tensor) -> torch.Tensor:
        """``ref`` (B, c_ref, h, w) -> keys and values (B, 2, heads, h'*w', d), pooled to at most ``kv_size`` per side."""
        if max(ref.shape[-2:]) > self.kv_size:
            ref = F.adaptive_avg_pool2d(ref, tuple(min(n, self.kv_size) for n in ref.shape[-2:]))  # (B, c_ref, h', w')
        kv = self.norm_kv(rearrange(ref, "b c h w -> b (h w) c"))  # (B, h'*w', c_ref)
        k, v = self.to_k(kv), self.to_v(kv)  # (B, h'*w', c) each
        return rearrange(torch.stack([k, v], dim=1), "b two n (m d) -> b two m n d", m=self.heads)

    def forward(self, x: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """``x`` (B*F, c, h, w) decoder features, ``kv`` from :meth:`reference` -> (B*F, c, h, w)."""
        b, (h, w) = kv.shape[0], x.shape[-2:]
        # all frames of a video query the same reference at once: queries are independent
        tokens = rearrange(x, "(b f) c h w -> b (f h w) c", b=b)  # (B, F*h*w, c)
        q = rearrange(self.to_q(self.norm_q(tokens)), "b n (m d) -> b m n d", m=self.heads)  # (B, heads, F*h*w, d)
        out = F.scaled_dot_product_attention(q, kv[:, 0], kv[:, 1])  # (B, heads, F*h*w, d)
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

    def reference(self, ref: torch.Tensor) -> torch.Tensor:
        """``ref`` (B, c_ref, h, w) -> the projection's reference half plus every bias, (B, h, w, c)."""
        c = self.norm.num_channels
        weight = self.proj.weight[:, :, 0, 0]  # (c, c + c_ref)
        w_x, w_ref = weight[:, :c], weight[:, c:]  # (c, c), (c, c_ref)
        tokens = rearrange(ref, "b c h w -> b h w c")  # (B, h, w, c_ref)
        return F.linear(F.layer_norm(tokens, tokens.shape[-3:], eps=self.norm_ref.eps), w_ref * self.norm_ref.weight,
                        self.proj.bias + w_ref @ self.norm_ref.bias + w_x @ self.norm.bias)  # (B, h, w, c)

    def forward(self, x: torch.Tensor, from_ref: torch.Tensor) -> torch.Tensor:
        """``x`` (B*F, c, h, w) decoder features, ``from_ref`` from :meth:`reference` -> (B*F, c, h, w).

        The same sum as ``x + proj(cat([norm(x), norm_ref(ref)]))``, computed without copies in x's own memory
        layout (the CPU VAE hands out channels-last maps for several frames, NCHW ones for one frame; the NCHW
        1x1 conv kernel is 4-7x slower than a matmul there): each one-group norm is a layer norm over the map
        with its per-channel scale and shift folded into the projection, and the projection is split by input,
        its reference half computed once per decode (:meth:`reference`).
        """
        b, (c, h, w) = from_ref.shape[0], x.shape[1:]
        weight = self.proj.weight[:, :c, 0, 0] * self.norm.weight  # (c, c), the norm's scale folded in
        if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            tokens = rearrange(x, "(b f) c h w -> b f h w c", b=b)  # (B, F, h, w, c), a view
            out = F.linear(F.layer_norm(tokens, tokens.shape[-3:], eps=self.norm.eps), weight)  # (B, F, h, w, c)
            out += from_ref[:, None]  # in place: a broadcast out-of-place add costs as much as the projection
            out += tokens
            return rearrange(out, "b f h w c -> (b f) c h w")  # channels-last, as x
        maps = rearrange(x.contiguous(), "(b f) c h w -> b f c (h w)", b=b)  # (B, F, c, h*w)
        out = weight @ F.layer_norm(maps, maps.shape[-2:], eps=self.norm.eps)  # (B, F, c, h*w)
        out += rearrange(from_ref, "b h w c -> b 1 c (h w)")
        out += maps
        return rearrange(out, "b f c (h w) -> (b f) c h w", h=h)  # NCHW, as x


def resized(feature: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, c, h', w') -> (B, c, *size); a no-op when the sizes already match."""
    if tuple(feature.shape[-2:]) == tuple(size):
        return feature
    return F.interpolate(feature, size=size, mode="bilinear", align_corners=False)
