"""The Motion Alignment Module on Wan's full 3-D self-attention (``attn1``), where a DiT's frames meet.

A DiT has no temporal-attention and no cross-frame layer: frames and tokens mix in each block's
self-attention ``attn1`` over all ``F' * h' * w'`` tokens of a video (``F'`` latent frames, ``h' * w'``
patches per frame, frame-major, as ``WanTransformer3DModel`` flattens ``(F', h', w')``). So the backbone
lists ``attn1`` as both, and with both alignments on the one :class:`WanMamProcessor` of a block does both.

:class:`WanFrameAttnProcessor` computes what diffusers' ``WanAttnProcessor`` does for self-attention
(q/k/v, RMS q/k norms, Wan's 3-D RoPE, one dispatched attention call, output projection) with the attention
call as a seam (:meth:`WanFrameAttnProcessor.attend`); other calls (cross-attention, fused projections) go
to the stock code. :class:`WanMamProcessor` is that processor with MAM on, inside ``aligned()``:

* **Motion alignment**, hooked at the INPUT of ``attn1``'s processor, i.e. on
  ``norm1(h) * (1 + scale) + shift`` (the adaLN-modulated hidden states), before the q/k/v projections and
  RoPE. The tokens are regrouped per spatial location into trajectories over latent frames
  ``(2*B*h'*w', F', C)``, each split into its temporal mean (the static part) and the residual (the motion
  part); the augmented half takes its own mean plus the original's residual, then the tokens go back to
  Wan's order. Why there: AnimateDiff's temporal attention is aligned on its normalised input too; the
  residual stream stays untouched (only what attention sees is aligned, as METHOD.md describes); the
  modulation is the same for both halves (same timestep) and per channel, so it commutes with the temporal
  mean; and RoPE is applied after the swap, at the positions the tokens really have.
* **Correspondence alignment**, hooked at the attention CALL inside ``attn1``, after the q/k norms and RoPE
  and before ``to_out``: the augmented half's output is ``softmax(Q_x K_x^T / sqrt d) V~``, its own values
  aggregated with the original's attention over all frames' tokens. Why there: the probabilities are then
  exactly the ones the original branch uses, positions (RoPE) included; and the augmented output still
  goes through the layer's own output projection and the block's gate, as the stock layer's does. It is ONE
  fused attention call on ``[Q_x; Q_x], [K_x; K_x], [V_x; V~]`` (``correspondence_inputs``): the cost of the
  stock call, the ``(F'*N)^2`` attention matrix never materialised.

With both on, the augmented values come from its motion-aligned input. The processors must know ``F'``:
they share one :class:`FrameLayout` that the backbone sets before every transformer call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.transformers.transformer_wan import WanAttnProcessor
from einops import rearrange

from flashctl.model.motion_alignment import (CORRESPONDENCE, MOTION, MamProcessor, align_motion,
                                             correspondence_inputs)


@dataclass
class FrameLayout:
    """How many latent frames the tokens of the current transformer call hold (set by the backbone)."""

    frames: int = 1


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's RoPE on ``(B, L, heads, d)``: channel pairs (2i, 2i+1) rotated; cos/sin ``(1, L, 1, d)``, pair-repeated."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)  # (B, L, heads, d/2) each
    c, s = cos[..., 0::2], sin[..., 1::2]  # (1, L, 1, d/2)
    return torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1).flatten(-2).type_as(x)  # (B, L, heads, d)


class WanFrameAttnProcessor(WanAttnProcessor):
    """Wan's self-attention with the attention call as a seam, and motion alignment over its token layout."""

    def __init__(self, layout: FrameLayout) -> None:
        super().__init__()
        self.layout = layout

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None,
                 rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        if encoder_hidden_states is not None or attn.add_k_proj is not None or attn.fused_projections:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        heads = attn.heads
        query = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (heads, -1))  # (B, L, heads, d)
        key = attn.norm_k(attn.to_k(hidden_states)).unflatten(2, (heads, -1))  # (B, L, heads, d)
        value = attn.to_v(hidden_states).unflatten(2, (heads, -1))  # (B, L, heads, d)
        if rotary_emb is not None:
            query, key = apply_rope(query, *rotary_emb), apply_rope(key, *rotary_emb)
        out = self.attend(query, key, value, attention_mask).flatten(2, 3).type_as(query)  # (B, L, heads*d)
        return attn.to_out[1](attn.to_out[0](out))  # (B, L, C)

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               mask: torch.Tensor | None = None) -> torch.Tensor:
        """softmax(Q K^T / sqrt d) V on ``(B, L, heads, d)``, through diffusers' attention dispatch."""
        return dispatch_attention_fn(query, key, value, attn_mask=mask, dropout_p=0.0, is_causal=False,
                                     backend=self._attention_backend, parallel_config=self._parallel_config)

    def align_motion(self, hidden_states: torch.Tensor, donor_grad: bool = True,
                     keep_reference: bool = False) -> torch.Tensor:
        """``(2B, F'*N, C)`` ``[x; x~]`` -> same: x~'s tokens become their temporal mean + x's residual."""
        frames = self.layout.frames
        if hidden_states.shape[1] % frames:
            raise ValueError(f"{hidden_states.shape[1]} tokens do not split into {frames} latent frames")
        tracks = rearrange(hidden_states, "b (f n) c -> (b n) f c", f=frames)  # (2B*N, F', C): trajectories
        tracks = align_motion(tracks, donor_grad, keep_reference)  # (2B*N, F', C): [h; s~ + m]; B*N rows per half
        return rearrange(tracks, "(b n) f c -> b (f n) c", b=hidden_states.shape[0])  # (2B, F'*N, C)

    def mam_processor(self, kinds: frozenset[str], donor_grad: bool) -> WanMamProcessor:
        """The MAM processor replacing this one (``install_mam`` asks); ``kinds`` ⊆ {motion, correspondence}."""
        return WanMamProcessor(self, kinds, donor_grad)


class WanMamProcessor(WanFrameAttnProcessor, MamProcessor):
    """``attn1`` with MAM: inside ``aligned()``, motion alignment on its input and/or correspondence
    alignment at its attention call (see the module docstring for where and why); otherwise the stock layer."""

    def __init__(self, stock: WanFrameAttnProcessor, kinds: frozenset[str], donor_grad: bool = True) -> None:
        super().__init__(stock.layout)
        unknown = kinds - {MOTION, CORRESPONDENCE}
        if unknown or not kinds:
            raise ValueError(f"MAM kinds must be a non-empty subset of {{{MOTION}, {CORRESPONDENCE}}}, got {kinds}")
        self.stock, self.kinds, self.donor_grad, self.active = stock, kinds, donor_grad, False
        self._attention_backend, self._parallel_config = stock._attention_backend, stock._parallel_config

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None,
                 rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        if self.active and MOTION in self.kinds:
            hidden_states = self.align_motion(hidden_states, self.donor_grad, self.keep_reference)  # (2B, F'*N, C)
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[x; x~]`` -> ``[A_x V_x; A_x V~]``, ``A_x = softmax(Q_x K_x^T/sqrt d)``, with correspondence on."""
        if self.active and CORRESPONDENCE in self.kinds:
            query, key, value = correspondence_inputs(query, key, value, self.donor_grad)  # (2B, L, heads, d) each
        return super().attend(query, key, value, mask)


def install_frame_processors(transformer: torch.nn.Module, names: list[str], layout: FrameLayout) -> None:
    """Put a :class:`WanFrameAttnProcessor` (sharing ``layout``) on every processor named in ``names``."""
    transformer.set_attn_processor({n: WanFrameAttnProcessor(layout) if n in names else p
                                    for n, p in transformer.attn_processors.items()})
