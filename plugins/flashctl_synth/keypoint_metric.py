"""Pose comparisons in the synthetic world, from the keypoint estimator (:mod:`.keypoint_net`).

* :func:`keypoint_error`, the ``keypoints`` metric. ``correlation`` and ``gain`` compare how the joints
  *move*: each video's joint trajectories as displacements from its own frame 0, so a frozen video scores
  exactly 0 and estimator jitter on blurry frames points nowhere in particular. ``error`` compares absolute
  joint positions (in body heights); it is kept for reference but fails the frozen rule on generated videos
  (a copied first frame is closer, in position, than any imprecise motion: docs/results.md).
* :func:`recognise`: which action, performed by the same synthetic person, moves most like a video (highest
  displacement correlation).

The same action done facing the other way or leading with the other side is a mirror image: the real
displacements are also compared with x negated and/or the left and right joints swapped; the best match counts.
"""

from __future__ import annotations

import itertools

import torch

from .actions import ACTIONS
from .keypoint_net import body_height, estimate, to_tensor
from .render import render_clip
from .skeleton import JOINTS

EPS = 1e-9
SWAP = [JOINTS.index(n.replace("right", "@").replace("left", "right").replace("@", "left")) for n in JOINTS]


def _gap(a: torch.Tensor, b: torch.Tensor, height: torch.Tensor | float) -> float:
    """Mean joint distance over frames 1..F-1 of ``a``/``b`` (F, J, 2), in units of ``height`` pixels."""
    return ((a[1:] - b[1:]).norm(dim=-1).mean() / height).item()


def _mirrors(moves: torch.Tensor) -> list[torch.Tensor]:
    """``moves`` (F, J, 2) as seen facing either way and leading with either side (4 variants)."""
    flip = torch.tensor([-1.0, 1.0])
    return [(moves[:, SWAP] if swap else moves) * (flip if negate else 1.0)
            for swap, negate in itertools.product((False, True), repeat=2)]


def compare_moves(fake: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
    """``correlation`` (cosine) and ``gain`` (``<fake, real> / <real, real>``) of two (F, J, 2) joint tracks
    as displacements from frame 0, best over :func:`_mirrors` of the real one; 0 when either is still."""
    fake = fake - fake[0]
    best = {"correlation": -2.0, "gain": 0.0}
    for real_moves in _mirrors(real - real[0]):
        dot = float((fake * real_moves).sum())
        norms = float(fake.norm() * real_moves.norm())
        score = {"correlation": dot / norms if norms > EPS else 0.0, "gain": dot / (float(real_moves.pow(2).sum()) + EPS)}
        best = max(best, score, key=lambda s: s["correlation"])
    return best


def keypoint_error(generated: torch.Tensor, *, reference: torch.Tensor, target: torch.Tensor | None = None,
                   **_: object) -> dict[str, float]:
    """Joints estimated on each generated frame vs on the real frame (see the module docstring).

    ``generated``/``target`` (F, 3, H, W) in [-1, 1] (the shorter one sets F); the body height comes from
    the real clip's frame-0 bone lengths. ``{}`` without a target.
    """
    if target is None:
        return {}
    frames = min(len(generated), len(target))
    scale = torch.tensor([target.shape[-1] / generated.shape[-1], target.shape[-2] / generated.shape[-2]])
    fake = estimate(generated[:frames]) * scale                          # (F, J, 2) in target pixels
    real = estimate(target[:frames])                                     # (F, J, 2)
    return {**compare_moves(fake, real), "error": _gap(fake, real, body_height(real[0]))}


def recognise(video: torch.Tensor, meta: dict) -> tuple[str, dict[str, float]]:
    """``(nearest action, displacement correlation per action)`` for ``video`` (F, 3, H, W) in [-1, 1] of the
    person in ``meta``.

    ``meta`` is a synthetic clip's record (``render_clip``'s, or the ``<name>.json`` beside a synth mp4): the
    same person (its ``seed`` and ``split``) is rendered doing every action from its own random start phase, and
    each real trajectory is compared with the video's as displacements from frame 0 (:func:`compare_moves`), so
    a different starting pose does not count. A still video matches nothing: its nearest action is ``"none"``.
    """
    size = meta["size"]
    fake = estimate(video) * torch.tensor([size / video.shape[-1], size / video.shape[-2]])  # (F, J, 2)
    scores = {}
    for action in ACTIONS:
        clip, _ = render_clip(action, frames=len(video), size=size, fps=meta["fps"], seed=meta["seed"],
                              split=meta["split"], canonical=meta.get("canonical", False))  # (F, size, size, 3)
        scores[action] = compare_moves(fake, estimate(to_tensor(clip)))["correlation"]
    best = max(scores, key=scores.get)
    return (best if scores[best] > 0 else "none"), scores
