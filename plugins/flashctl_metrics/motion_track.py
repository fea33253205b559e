"""Motion tracks from optical flow, compared with the real continuation's (weight-free, for any footage).

Both videos' consecutive-frame flows (:mod:`.flow`, blind to whole-frame brightness and colour
changes) are pooled to a coarse grid, in fractions of the frame size so that videos of different
resolutions compare. A frozen video has zero flow; noise has flow that points nowhere in particular. (An endpoint error
relative to the real flow was tried and dropped: another person doing the same action, a few pixels
off, scored worse than a frozen video, whose error is exactly the real flow's length.)
The same action done with the other side leading or facing the other way is the mirror image of the
real motion, so the real flow is also compared mirrored (left-right), and the better match counts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .flow import video_flow

EPS = 1e-6


def pooled_flow(video: torch.Tensor, grid: int) -> torch.Tensor:
    """Flow of ``(F, C, H, W)``, pooled to ``grid x grid`` cells, in frame widths/heights: ``(F-1, 2, g, g)``."""
    height, width = video.shape[-2:]
    flow = video_flow(video)  # (F-1, 2, H, W) pixels
    flow = flow / torch.tensor([width, height], dtype=flow.dtype, device=flow.device).view(1, 2, 1, 1)
    return F.adaptive_avg_pool2d(flow, grid)  # (F-1, 2, g, g)


def mirrored(flow: torch.Tensor) -> torch.Tensor:
    """The left-right mirror image of ``(T, 2, g, g)`` flow: columns reversed, dx negated."""
    return flow.flip(-1) * torch.tensor([-1.0, 1.0], dtype=flow.dtype, device=flow.device).view(1, 2, 1, 1)


def compare_flows(gen: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
    """``correlation``: cosine of the two ``(T, 2, g, g)`` flow fields (0 when either is still), blind
    to how much the video moves; ``gain``: the least-squares scale of the real flow inside the generated
    one, ``<gen, real> / <real, real>`` (1.0 = the real motion at its real size, 0.5 = half as much or
    half of it right, 0 = still or unrelated, negative = the opposite way)."""
    dot = float((gen * real).sum())
    norms = float(gen.norm() * real.norm())
    return {"correlation": dot / norms if norms > 0 else 0.0, "gain": dot / (float(real.pow(2).sum()) + EPS)}


def motion_track(generated: torch.Tensor, *, reference: torch.Tensor, target: torch.Tensor | None = None,
                 grid: int) -> dict[str, float]:
    """Does the generated video move like the real continuation, in direction, place and time?

    Returns ``{}`` without a target or with fewer than two frames; frames beyond the shorter video
    are ignored. See the module docstring for the mirror rule.
    """
    if target is None:
        return {}
    frames = min(len(generated), len(target))
    if frames < 2:
        return {}
    gen = pooled_flow(generated[:frames], grid)  # (F-1, 2, g, g)
    real = pooled_flow(target[:frames], grid)  # (F-1, 2, g, g)
    return max(compare_flows(gen, real), compare_flows(gen, mirrored(real)), key=lambda s: s["correlation"])
