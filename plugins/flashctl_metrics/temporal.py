"""Metrics of a video over time: transition smoothness, temporal consistency, motion fidelity.

Inputs are ``(F, C, H, W)`` floats in [-1, 1]; changes are reported on the [0, 1] scale. Given the
real continuation (``target``), smoothness and consistency are reported as ratios to the real
clip's own value (1.0 = like the real motion), so that a video which does not move cannot win.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-3  # about a quarter of one 8-bit level: changes below this count as "no change"


def frame_changes(video: torch.Tensor) -> torch.Tensor:
    """Mean absolute change between consecutive frames, on the [0, 1] scale: ``(F-1,)``."""
    return (video[1:].float() - video[:-1].float()).abs().mean(dim=(1, 2, 3)) / 2


def ratio(value: float, real: float) -> float:
    """``value`` over the real clip's ``real``, both changes on the [0, 1] scale, EPS-guarded."""
    return (value + EPS) / (real + EPS)


def _jump(video: torch.Tensor) -> tuple[float, float] | None:
    """(frame 0->1 change over the median later change, frame 0->1 change); None below two frames."""
    changes = frame_changes(video)  # (F-1,)
    if len(changes) == 0:
        return None
    typical = changes[1:].median() if len(changes) > 1 else changes[0]
    return ratio(float(changes[0]), float(typical)), float(changes[0])


def smoothness(generated: torch.Tensor, *, reference: torch.Tensor,
               target: torch.Tensor | None = None) -> dict[str, float]:
    """``jump``: the frame 0->1 change over the median of the later consecutive changes.

    1.0 means the video leaves the reference as gently as it moves afterwards; a large value means
    it jumps out of the reference. ``first_change`` is the raw frame 0->1 change. With a target,
    ``jump_ratio`` (generated jump over the real clip's) replaces both.
    """
    jump = _jump(generated)
    if jump is None:
        return {}
    real = None if target is None else _jump(target)
    if real is not None:
        return {"jump_ratio": jump[0] / real[0]}
    return {"jump": jump[0], "first_change": jump[1]}


def flicker(video: torch.Tensor) -> float:
    """Mean |second temporal difference| of ``(F >= 3, C, H, W)``, on the [0, 1] scale."""
    x = video.float()
    second = x[2:] - 2 * x[1:-1] + x[:-2]  # (F-2, C, H, W), range [-4, 4]
    return float(second.abs().mean() / 4)


def temporal_consistency(generated: torch.Tensor, *, reference: torch.Tensor,
                         target: torch.Tensor | None = None) -> dict[str, float]:
    """``similarity`` = 1 - mean consecutive change; ``flicker`` = mean |second temporal difference|.

    Smooth motion has small second differences; frame-to-frame boiling or brightness pumping
    makes them as large as the first differences. With a target (over the shorter video's frames),
    ``change_ratio`` and ``flicker_ratio`` (the mean change and the flicker over the real clip's)
    replace them.
    """
    if target is not None:
        frames = min(len(generated), len(target))
        if frames < 3:
            return {}
        gen, real = generated[:frames], target[:frames]
        return {"change_ratio": ratio(float(frame_changes(gen).mean()), float(frame_changes(real).mean())),
                "flicker_ratio": ratio(flicker(gen), flicker(real))}
    if len(generated) < 2:
        return {}
    scores = {"similarity": float(1 - frame_changes(generated).mean())}
    if len(generated) >= 3:
        scores["flicker"] = flicker(generated)
    return scores


def motion_maps(video: torch.Tensor, grid: int) -> torch.Tensor:
    """Where and how much each frame differs from frame 0, pooled to ``grid x grid``: ``(F-1, g, g)``.

    Averaging |x_t - x_0| over channels makes the maps blind to colour permutations; a static
    background cancels out, so mostly the moving figure remains.
    """
    energy = (video[1:].float() - video[:1].float()).abs().mean(dim=1, keepdim=True)  # (F-1, 1, H, W)
    return F.adaptive_avg_pool2d(energy, grid)[:, 0]  # (F-1, g, g)


def _agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of two non-negative maps; 1 when both are empty, 0 when only one is."""
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return float(na == nb)
    return float((a * b).sum() / (na * nb))


def motion_fidelity(generated: torch.Tensor, *, reference: torch.Tensor, target: torch.Tensor | None = None,
                    grid: int) -> dict[str, float]:
    """Does the generated video move where and when the real continuation moves?

    ``map_similarity``: cosine similarity of the coarse motion-energy maps of generated and target
    over all frames (1 = same places at the same times, 0 = no overlap or no motion).
    ``energy_ratio``: min/max of their mean motion energy (1 = as much change as the target).
    Returns ``{}`` without a target. Frames beyond the shorter video are ignored; spatial sizes
    may differ (both are pooled to the grid).
    """
    if target is None:
        return {}
    frames = min(len(generated), len(target))
    if frames < 2:
        return {}
    gen, tgt = motion_maps(generated[:frames], grid), motion_maps(target[:frames], grid)  # (F-1, g, g) each
    eg, et = float(gen.mean()), float(tgt.mean())
    ratio = 1.0 if max(eg, et) == 0 else min(eg, et) / max(eg, et)
    return {"map_similarity": _agreement(gen.flatten(), tgt.flatten()), "energy_ratio": ratio}
