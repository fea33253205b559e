"""How a video leaves its reference image, relative to the real continuation: informative under
``animate.anchor = true``, where frame 0 *is* the reference and first-frame PSNR/SSIM are perfect.

``first_step``: the frame 0->1 change over the real clip's 0->1 change (1.0 = as gentle or as
brisk as the real start; near 0 = a frozen start, large = a jump out of the reference).
``drift``: how far the colours of frames 1..N move away from the video's own frame 0 (1 - histogram
intersection, averaged over the frames), over the same for the real clip (1.0 = the appearance
changes only as much as the real motion makes it; large = the person's colours drift or boil; near 0
= nothing moves). Frame 0, not the reference: how well frame 0 matches the reference is
``first-frame``'s question (and trivially perfect under anchoring).
"""

from __future__ import annotations

import torch

from .reference import histogram_overlap
from .temporal import frame_changes, ratio


def drift(video: torch.Tensor, bins: int) -> float:
    """Mean 1 - histogram intersection of frame 0 with frames 1..N of ``(F >= 2, C, H, W)``."""
    return float(1 - histogram_overlap(video[1:], video[0], bins).mean())


def transition(generated: torch.Tensor, *, reference: torch.Tensor, target: torch.Tensor | None = None,
               bins: int) -> dict[str, float]:
    """``first_step`` and ``drift`` relative to the real clip (module docstring); ``{}`` without a target.

    ``reference`` is unused: both keys compare each video with its own frame 0.
    """
    if target is None:
        return {}
    frames = min(len(generated), len(target))
    if frames < 2:
        return {}
    gen, real = generated[:frames], target[:frames]
    return {"first_step": ratio(float(frame_changes(gen[:2])[0]), float(frame_changes(real[:2])[0])),
            "drift": ratio(drift(gen, bins), drift(real, bins))}
