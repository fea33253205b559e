"""Cross-frame attention: spatial self-attention where frame f attends to frame 0 and itself.

Installed on every spatial self-attention layer (``*.attentions.*.transformer_blocks.*.attn1``)
of the backbone. ``hidden_states`` arrive as ``(B*F, N, C)``: F consecutive rows per video.
Frame f's queries meet the keys/values of ``[frame 0 tokens, frame f tokens]``; this carries
the reference appearance into later frames. The attention weights are the cross-frame
correspondences the Motion Alignment Module aligns: it subclasses this processor and overrides
:meth:`CrossFrameAttnProcessor.attend`. With one frame the processor is the stock one.

``kernel`` (``runtime.attention``) picks PyTorch's fused SDPA or the plain matmul-softmax-matmul
("eager"), for both the cross-frame path and the stock fallback.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0
from einops import rearrange

KERNELS = ("sdpa", "eager")
STOCK_EAGER = AttnProcessor()  # diffusers' matmul-softmax processor; stateless


# processor names of spatial self-attention (the layers cross-frame attention replaces) and the LoRA
# target of their query projection: the same in every diffusers video U-Net we wrap
SPATIAL_SELF_ATTN = re.compile(r"(.*\.)?attentions\.\d+\.transformer_blocks\.\d+\.attn1\.processor")
CROSS_FRAME_QUERY = r".*attentions\.\d+\.transformer_blocks\.\d+\.attn1\.to_q"


class CrossFrameAttnProcessor(AttnProcessor2_0):
    """Mirrors :class:`AttnProcessor2_0`; ``num_frames`` is set by the backbone before each forward."""

    def __init__(self, num_frames: int = 1, kernel: str = "sdpa") -> None:
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"attention kernel must be one of {KERNELS}, got {kernel!r}")
        self.num_frames = num_frames
        self.kernel = kernel

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None, *args, **kwargs):
        stock = (self.num_frames == 1 or encoder_hidden_states is not None or attention_mask is not None
                 or hidden_states.ndim != 3 or attn.spatial_norm is not None or attn.group_norm is not None)
        if stock:
            call = STOCK_EAGER if self.kernel == "eager" else super().__call__
            return call(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        residual = hidden_states  # (B*F, N, C)
        query, key, value = self.project(attn, hidden_states)  # each (B*F, heads, N, d)
        key, value = self.frame_context(key), self.frame_context(value)  # (B*F, heads, 2N, d)
        out = self.attend(query, key, value)  # (B*F, heads, N, d)
        out = rearrange(out, "bf h n d -> bf n (h d)").to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))  # (B*F, N, C)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    @staticmethod
    def project(attn: Attention, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B*F, N, C) -> query, key, value, each (B*F, heads, N, d), with the layer's q/k norms."""
        heads = attn.heads
        query = rearrange(attn.to_q(hidden_states), "bf n (h d) -> bf h n d", h=heads)
        key = rearrange(attn.to_k(hidden_states), "bf n (h d) -> bf h n d", h=heads)
        value = rearrange(attn.to_v(hidden_states), "bf n (h d) -> bf h n d", h=heads)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        return query, key, value

    def frame_context(self, x: torch.Tensor) -> torch.Tensor:
        """(B*F, heads, N, d) -> (B*F, heads, 2N, d): frame 0's tokens, then the frame's own."""
        x = rearrange(x, "(b f) h n d -> b f h n d", f=self.num_frames)
        first = x[:, :1].expand_as(x)  # (B, F, heads, N, d)
        return rearrange(torch.cat([first, x], dim=3), "b f h n d -> (b f) h n d")

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """softmax(Q K^T / sqrt(d)) V; the seam correspondence alignment overrides."""
        if self.kernel == "eager":
            return eager_attention(query, key, value)
        return F.scaled_dot_product_attention(query, key, value)  # (B*F, heads, N, d)


def eager_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """SDPA without a fused kernel: (..., N, d), (..., M, d), (..., M, d) -> (..., N, d); softmax in float32."""
    scores = query @ key.transpose(-1, -2) * query.shape[-1] ** -0.5  # (..., N, M)
    return scores.float().softmax(dim=-1).to(value.dtype) @ value


def install_cross_frame(unet: torch.nn.Module, names: list[str]) -> None:
    """Replace the processors named in ``names`` (spatial self-attention) with cross-frame ones."""
    unet.set_attn_processor({n: CrossFrameAttnProcessor() if n in names else p
                             for n, p in unet.attn_processors.items()})


def set_num_frames(unet: torch.nn.Module, frames: int) -> None:
    """Tell every cross-frame processor (subclasses installed later included) the frame count."""
    for proc in unet.attn_processors.values():
        if isinstance(proc, CrossFrameAttnProcessor):
            proc.num_frames = frames


def split_attention(unet: torch.nn.Module, temporal: re.Pattern[str]) -> tuple[list[str], list[str]]:
    """(spatial self-attention, temporal attention) processor names; the spatial ones become cross-frame."""
    spatial = [n for n in unet.attn_processors if SPATIAL_SELF_ATTN.fullmatch(n)]
    install_cross_frame(unet, spatial)
    return spatial, [n for n in unet.attn_processors if temporal.fullmatch(n)]
