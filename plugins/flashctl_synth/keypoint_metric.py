"""Pose comparisons in the synthetic world, from the keypoint estimator (:mod:`.keypoint_net`).

* :func:`keypoint_error`, the ``keypoints`` metric: how far the generated person's joints are from the real
  continuation's, in body heights (lower is better).
* :func:`recognise`: which action, performed by the same synthetic person, moves most like a video.
"""

from __future__ import annotations

import torch

from .actions import ACTIONS
from .keypoint_net import body_height, estimate, to_tensor
from .render import render_clip


def _gap(a: torch.Tensor, b: torch.Tensor, height: torch.Tensor | float) -> float:
    """Mean joint distance over frames 1..F-1 of ``a``/``b`` (F, J, 2), in units of ``height`` pixels."""
    return ((a[1:] - b[1:]).norm(dim=-1).mean() / height).item()


def keypoint_error(generated: torch.Tensor, *, reference: torch.Tensor, target: torch.Tensor | None = None,
                   **_: object) -> dict[str, float]:
    """``error``: joints estimated on each generated frame vs on the real frame, over the real body height.

    ``generated``/``target`` (F, 3, H, W) in [-1, 1] (the shorter one sets F); the body height comes from
    the real clip's frame-0 bone lengths. ``{}`` without a target.
    """
    if target is None:
        return {}
    frames = min(len(generated), len(target))
    scale = torch.tensor([target.shape[-1] / generated.shape[-1], target.shape[-2] / generated.shape[-2]])
    fake = estimate(generated[:frames]) * scale                          # (F, J, 2) in target pixels
    real = estimate(target[:frames])                                     # (F, J, 2)
    return {"error": _gap(fake, real, body_height(real[0]))}


def recognise(video: torch.Tensor, meta: dict) -> tuple[str, dict[str, float]]:
    """``(nearest action, distance per action)`` for ``video`` (F, 3, H, W) in [-1, 1] of the person in ``meta``.

    ``meta`` is a synthetic clip's record (``render_clip``'s, or the ``<name>.json`` beside a synth mp4): the
    same person (its ``seed`` and ``split``) is rendered doing every action from its own random start phase, and
    each real trajectory is compared with the video's as displacements from frame 0, so a different starting
    pose does not count. Distances are mean joint gaps over frames 1..F-1 in body heights.
    """
    size = meta["size"]
    fake = estimate(video) * torch.tensor([size / video.shape[-1], size / video.shape[-2]])  # (F, J, 2)
    height = meta["body"]["height"] * size
    distances = {}
    for action in ACTIONS:
        clip, _ = render_clip(action, frames=len(video), size=size, fps=meta["fps"], seed=meta["seed"],
                              split=meta["split"], canonical=meta.get("canonical", False))  # (F, size, size, 3)
        real = estimate(to_tensor(clip))                                 # (F, J, 2)
        distances[action] = _gap(fake - fake[0], real - real[0], height)
    return min(distances, key=distances.get), distances
