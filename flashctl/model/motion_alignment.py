"""Motion Alignment Module (MAM): attention processors that align an augmented clip with its original.

Training runs the paired batch ``[x; x~]`` (x~ = a strong, motion-preserving augmentation of x,
noised with the same noise and timestep) through the U-Net once. Dimension 0 of every hidden
state holds the originals in its first half and the augmented copies in its second half: for
temporal attention ``(2*B*H*W, F, C)``, for spatial attention ``(2*B*F, H*W, C)`` (blocks of F
frames per video). MAM only ever rewrites the second half, so the original branch is exactly
the stock model.

* **Motion alignment** (:class:`MotionAlignProcessor`, on the temporal-attention layers the
  backbone lists): the hidden states entering attention over frames split into a static part
  ``s = mean_f(h)`` and a motion part ``m = h - s``; the augmented branch continues with
  ``h~ <- s~ + m``. It wraps the layer's own processor, aligns its input and delegates, so it
  fits any backbone (AnimateDiff's ``attn1``/``attn2`` are both self-attention over frames; an
  SVD temporal ``attn2`` is cross-attention to the image embedding, whose queries are aligned
  and whose ``encoder_hidden_states`` pass through untouched).
* **Correspondence alignment** (:class:`CorrespondenceAlignProcessor`, on the cross-frame
  spatial layers): the probabilities of x aggregate the values of x~,
  ``out~ = softmax(Q_x K_x^T / sqrt(d)) V~``, keys being frame 0's and the frame's own tokens.
* A DiT mixes frames and tokens in ONE 3-D self-attention, so the backbone lists the same layer as
  temporal and cross-frame attention, and its kind is ``motion+correspondence`` when both are on. A
  stock processor with its own token layout builds its MAM processor itself:
  ``stock.mam_processor(kinds, donor_grad)`` returns a :class:`MamProcessor` (e.g. ``flashctl_wan.mam``),
  which may use :func:`align_motion` and :func:`correspondence_inputs` on its own layout.

How METHOD.md's [choice] notes are read here:

* ``L = L(x) + lambda_m * L(x~ with motion from x) + lambda_c * L(x~ with correspondences from x)``
  with both alignments acting in ONE augmented branch when both are on. The two aligned terms are
  then the same term, so the augmented branch is weighted ``lambda_m + lambda_c``; with one
  alignment on, its own lambda; with both off (ablation #2) x~ is a plain extra example of
  weight 1 (:attr:`MamSection.augmented_weight`). L(.) is the mean per-video denoising loss.
* ``donor_grad`` (default on): gradients of the augmented loss flow into the original's donated
  features (its motion part ``m``; its queries and keys). Off: those are detached for the
  augmented branch only.
* ``reference_frame`` (default ``"align"``): frame 0 takes part in the static/motion split like every frame.
  Here frame 0 enters the denoiser clean (the reference) while the others are noised, so its features are
  far from the others' mean and the swap mostly hands the copy the original's frame-0 appearance;
  ``"keep"`` leaves the copy its own frame 0 and splits over frames 1.. (docs/results.md, "Why motion
  alignment costs").
* Processors are inert (exactly the stock layer) unless a forward runs inside :func:`aligned`,
  which the paired training loss enters (and the train loop, around backward too, for gradient
  checkpointing); :func:`uninstall_mam` restores the stock processors, and inference never
  installs them, so MAM costs nothing there.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch

from ..config import MamSection
from ..errors import ConfigError
from .cross_frame import CrossFrameAttnProcessor
from .interfaces import Backbone

MOTION, CORRESPONDENCE = "motion", "correspondence"
LAYERS_KEY = "train.mam.layers"


def _halves(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.shape[0] % 2:
        raise ValueError(f"MAM expects a paired batch [x; x~] in dimension 0, got {x.shape[0]} rows")
    return x.chunk(2)


def align_motion(hidden_states: torch.Tensor, donor_grad: bool = True, keep_reference: bool = False) -> torch.Tensor:
    """``(2N, F, C)`` -> same: the second half becomes its own static part plus the first half's motion.

    ``keep_reference``: frame 0 (the clean reference, where the others are noised) keeps the second half's own
    features, and the static/motion split runs over frames 1.. only (``[train.mam] reference_frame = "keep"``).
    """
    h, h_aug = _halves(hidden_states)  # each (N, F, C)
    donor = h if donor_grad else h.detach()
    first = int(keep_reference)  # the frames before it stay the copy's own
    swap = h_aug[:, first:].mean(dim=1, keepdim=True) - donor[:, first:].mean(dim=1, keepdim=True)  # s~ - s: (N, 1, C)
    return torch.cat([h, torch.cat([h_aug[:, :first], donor[:, first:] + swap], dim=1)])  # [h; s~ + m] with m = h - s


def correspondence_inputs(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          donor_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[x; x~]`` rows of q, k, v -> ``[Q_x; Q_x], [K_x; K_x], [V_x; V~]`` (any layout after dimension 0).

    ONE fused attention call on these gives ``[softmax(Q_x K_x^T/sqrt d) V_x; softmax(Q_x K_x^T/sqrt d) V~]``:
    the original's output and the augmented values aggregated with the original's probabilities, at the cost
    of the stock call on ``[x; x~]``; the probabilities stay inside the kernel (never built as a tensor here).
    """
    (q, _), (k, _) = _halves(query), _halves(key)  # (N, ...) each; x~'s own queries and keys are not used
    q_donor, k_donor = (q, k) if donor_grad else (q.detach(), k.detach())
    return torch.cat([q, q_donor]), torch.cat([k, k_donor]), value  # (2N, ...) each


class MamProcessor:
    """What every MAM processor has: the ``stock`` processor it replaces (put back by :func:`uninstall_mam`),
    ``donor_grad``, ``keep_reference``, and ``active``, which :func:`aligned` switches on; inactive it is the stock
    layer."""

    stock: Any
    donor_grad: bool = True
    keep_reference: bool = False  # [train.mam] reference_frame = "keep" (set by install_mam)
    active: bool = False


class MotionAlignProcessor(MamProcessor):
    """Wraps a temporal-attention processor ``stock``; inside :func:`aligned` it aligns the input first."""

    def __init__(self, stock: Any, donor_grad: bool = True) -> None:
        self.stock = stock
        self.donor_grad = donor_grad
        self.active = False

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.active:
            hidden_states = align_motion(hidden_states, self.donor_grad, self.keep_reference)  # (2*B*H*W, F, C)
        return self.stock(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs)


class CorrespondenceAlignProcessor(CrossFrameAttnProcessor, MamProcessor):
    """Cross-frame attention whose augmented half, inside :func:`aligned`, reuses the original's probabilities."""

    def __init__(self, stock: CrossFrameAttnProcessor, donor_grad: bool = True) -> None:
        super().__init__(stock.num_frames, stock.kernel)
        self.stock = stock
        self.donor_grad = donor_grad
        self.active = False

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """``[x; x~]`` rows -> ``[softmax(Q_x K_x^T/sqrt d) V_x; softmax(Q_x K_x^T/sqrt d) V~]``."""
        if not self.active:
            return super().attend(query, key, value)
        (q, _), (k, _), (v, v_aug) = _halves(query), _halves(key), _halves(value)  # (B*F, heads, N|2N, d)
        q_donor, k_donor = (q, k) if self.donor_grad else (q.detach(), k.detach())
        # two attentions with the layer's kernel, not one over [V | V~]: a value width unlike the query's
        # loses the fused kernel
        out = super().attend(q, k, v)  # (B*F, heads, N, d)
        out_aug = super().attend(q_donor, k_donor, v_aug)  # (B*F, heads, N, d)
        return torch.cat([out, out_aug])  # (2*B*F, heads, N, d)


def _stock(processor: Any) -> Any:
    return processor.stock if isinstance(processor, MamProcessor) else processor


def mam_layers(backbone: Backbone, options: MamSection) -> dict[str, str]:
    """Processor name -> ``motion`` / ``correspondence`` / ``motion+correspondence`` (a layer listed as both
    temporal and cross-frame attention, as a DiT's 3-D self-attention is) for the layers MAM replaces."""
    kinds = [(MOTION, "temporal", "train.mam.motion_align", backbone.temporal_attention, options.motion_align),
             (CORRESPONDENCE, "cross-frame", "train.mam.correspondence_align", backbone.spatial_attention,
              options.correspondence_align)]
    chosen: dict[str, str] = {}
    for kind, label, key, names, on in kinds:
        if not on:
            continue
        picked = [n for n in names if options.selects(n)]
        if not picked:
            shown = ", ".join(f"'{p}'" for p in options.patterns() or [])
            where = (f"none of its {len(names)} {label}-attention layers matches {LAYERS_KEY} = {shown}"
                     if names else f"it lists no {label}-attention layers")
            example = f"; e.g. {names[0]!r}" if names else ""
            raise ConfigError(f"{key} = true but backbone '{backbone.name}' has nothing to align: {where}",
                              hint=f"fix {LAYERS_KEY}{example}, or set {key} = false")
        chosen |= {n: f"{chosen[n]}+{kind}" if n in chosen else kind for n in picked}
    return chosen


def install_mam(backbone: Backbone, options: MamSection) -> dict[str, str]:
    """Replace the selected processors of ``backbone.unet`` with (inert) MAM ones; returns :func:`mam_layers`.

    Call it on the bare U-Net (before ``accelerate`` wraps it). Installing again replaces the
    previous MAM processors.
    """
    chosen = mam_layers(backbone, options)
    current = {n: _stock(p) for n, p in backbone.unet.attn_processors.items()}
    processors = {n: _mam_processor(backbone.name, n, current[n], kind, options.donor_grad)
                  for n, kind in chosen.items()}  # all built (and checked) before any is installed
    for processor in processors.values():
        processor.keep_reference = options.reference_frame == "keep"
    backbone.unet.set_attn_processor({n: processors.get(n, p) for n, p in current.items()})
    return chosen


def _mam_processor(backbone: str, name: str, stock: Any, kind: str, donor_grad: bool) -> MamProcessor:
    """The MAM processor of kind ``kind`` replacing ``stock`` on layer ``name``."""
    own = getattr(stock, "mam_processor", None)
    if own is not None:  # a processor with its own token layout (a DiT's 3-D attention) builds its own
        return own(frozenset(kind.split("+")), donor_grad)
    if kind == MOTION:
        return MotionAlignProcessor(stock, donor_grad)
    runs = type(stock).__name__
    if kind == CORRESPONDENCE and isinstance(stock, CrossFrameAttnProcessor):
        return CorrespondenceAlignProcessor(stock, donor_grad)
    if kind == CORRESPONDENCE:
        raise ConfigError(f"train.mam.correspondence_align: layer '{name}' of backbone '{backbone}' runs {runs}, "
                          "not cross-frame attention",
                          hint=f"set train.mam.correspondence_align = false or narrow {LAYERS_KEY}")
    raise ConfigError(f"train.mam: layer '{name}' of backbone '{backbone}' is listed as temporal and cross-frame "
                      f"attention, but its processor {runs} aligns only one of them",
                      hint=f"set train.mam.motion_align or train.mam.correspondence_align = false, or narrow "
                           f"{LAYERS_KEY}")


def uninstall_mam(unet: torch.nn.Module) -> int:
    """Put the stock processors back; returns how many MAM processors were removed."""
    processors = unet.attn_processors
    removed = sum(isinstance(p, MamProcessor) for p in processors.values())
    if removed:
        unet.set_attn_processor({n: _stock(p) for n, p in processors.items()})
    return removed


@contextmanager
def aligned(unet: torch.nn.Module) -> Iterator[list[Any]]:
    """Activate every installed MAM processor for forwards of a paired batch ``[x; x~]``; no-op without them.

    Nests (the previous state is restored on exit). Gradient checkpointing re-runs forwards during
    ``backward()``, so a training step keeps its backward inside this block too.
    """
    processors = [m.processor for m in unet.modules() if isinstance(getattr(m, "processor", None), MamProcessor)]
    previous = [p.active for p in processors]
    for processor in processors:
        processor.active = True
    try:
        yield processors
    finally:
        for processor, state in zip(processors, previous):
            processor.active = state
