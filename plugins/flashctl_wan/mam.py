"""Motion alignment on Wan's full 3-D self-attention (``attn1``), where MAM's temporal layer lives in a DiT.

A DiT has no temporal-attention layer: frames mix inside each block's self-attention ``attn1`` over
all ``F' * h' * w'`` tokens of a video (``F'`` latent frames, ``h' * w'`` patches per frame, frame-major,
as ``WanTransformer3DModel`` flattens ``(F', h', w')``). :class:`WanFrameAttnProcessor` is diffusers'
``WanAttnProcessor`` unchanged, plus :meth:`WanFrameAttnProcessor.align_motion`, which MAM's
``MotionAlignProcessor`` (:mod:`flashctl.model.motion_alignment`) calls instead of its own
``(2N, F, C)`` alignment when it wraps this processor: the tokens are regrouped per spatial location
into trajectories over latent frames ``(2*B*h'*w', F', C)``, each split into its temporal mean (the
static part) and the residual (the motion part), and the augmented half takes its own mean plus the
original's residual; then the tokens go back to Wan's order.

Where in the block, and why: at the input of ``attn1``'s processor, i.e. on
``norm1(h) * (1 + scale) + shift`` (the adaLN-modulated hidden states), before the q/k/v projections
and RoPE. That is where AnimateDiff's temporal attention is aligned too (its normalised input), the
residual stream stays untouched (only what attention sees is aligned, as METHOD.md describes), the
modulation is the same for both halves (same timestep) and per channel, so it commutes with the
temporal mean, and RoPE is applied after the swap to the positions the tokens really have. Both halves
use the same token layout, so the swap is a plain reindexing.

The processors must know ``F'``: they share one :class:`FrameLayout` that the backbone sets before
every transformer call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.models.transformers.transformer_wan import WanAttnProcessor
from einops import rearrange

from flashctl.model.motion_alignment import align_motion


@dataclass
class FrameLayout:
    """How many latent frames the tokens of the current transformer call hold (set by the backbone)."""

    frames: int = 1


class WanFrameAttnProcessor(WanAttnProcessor):
    """``WanAttnProcessor`` that also knows how to align motion over its frame-major token layout."""

    def __init__(self, layout: FrameLayout) -> None:
        super().__init__()
        self.layout = layout

    def align_motion(self, hidden_states: torch.Tensor, donor_grad: bool = True) -> torch.Tensor:
        """``(2B, F'*N, C)`` ``[x; x~]`` -> same: x~'s tokens become their temporal mean + x's residual."""
        frames = self.layout.frames
        if hidden_states.shape[1] % frames:
            raise ValueError(f"{hidden_states.shape[1]} tokens do not split into {frames} latent frames")
        tracks = rearrange(hidden_states, "b (f n) c -> (b n) f c", f=frames)  # (2B*N, F', C): trajectories
        tracks = align_motion(tracks, donor_grad)  # (2B*N, F', C): [h; s~ + m]; B*N rows per half, in order
        return rearrange(tracks, "(b n) f c -> b (f n) c", b=hidden_states.shape[0])  # (2B, F'*N, C)


def install_frame_processors(transformer: torch.nn.Module, names: list[str], layout: FrameLayout) -> None:
    """Put a :class:`WanFrameAttnProcessor` (sharing ``layout``) on every processor named in ``names``."""
    transformer.set_attn_processor({n: WanFrameAttnProcessor(layout) if n in names else p
                                    for n, p in transformer.attn_processors.items()})
