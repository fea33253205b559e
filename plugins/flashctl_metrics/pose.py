"""Motion fidelity from body keypoints: MediaPipe Pose on the generated and the real video, then the
two joint trajectories are compared.

Keypoints are ``(F, 33, 3)`` arrays in MediaPipe's BlazePose order: x and y in pixels, then the
landmark's visibility in [0, 1]. A frame without a detected person has visibility 0 everywhere.
MediaPipe is optional (``pip install 'flashctl[pose]'``, mediapipe==0.10.21: the only release that
ships its pose models in the wheel, and it pins numpy<2); any callable ``video -> keypoints`` can
stand in for it (tests inject synthetic joints).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

SHOULDERS, HIPS = (11, 12), (23, 24)  # BlazePose landmark indices
LANDMARKS = 33


def normalise(keypoints: np.ndarray, visibility: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Positions relative to the hip centre of the first frame with a full torso, in torso lengths.

    Returns ``(positions (F, J, 2), visible (F, J) bool)``, or None when no frame shows both
    shoulders and both hips. The torso length is the median shoulder-centre to hip-centre distance.
    """
    xy = keypoints[..., :2].astype(np.float64)  # (F, J, 2)
    visible = keypoints[..., 2] >= visibility  # (F, J)
    torso_seen = visible[:, SHOULDERS + HIPS].all(axis=1)  # (F,)
    hips = xy[:, HIPS].mean(axis=1)  # (F, 2)
    torso = np.linalg.norm(xy[:, SHOULDERS].mean(axis=1) - hips, axis=-1)[torso_seen]  # (F_seen,)
    if len(torso) == 0 or np.median(torso) == 0:
        return None
    origin = hips[np.argmax(torso_seen)]  # (2,)
    return (xy - origin) / np.median(torso), visible


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; 1 when both are constant (neither moves), 0 when only one is."""
    sa, sb = a.std(), b.std()
    if sa == 0 or sb == 0:
        return float(sa == sb)
    return float(((a - a.mean()) * (b - b.mean())).mean() / (sa * sb))


def compare_trajectories(generated: np.ndarray, target: np.ndarray, visibility: float = 0.5) -> dict[str, float]:
    """Compare two ``(F, J, 3)`` keypoint tracks over the shorter one's frames.

    ``joint_error``: mean distance, in torso lengths, between the same joint in the same frame, over
    joints visible in both. ``motion_correlation``: Pearson correlation of the joints' frame-to-frame
    displacements (x and y), over joints visible in both videos in both frames. ``detected``: the
    fraction of frames with a full torso in both. ``{}`` when no joint is comparable.
    """
    frames = min(len(generated), len(target))
    gen, tgt = normalise(generated[:frames], visibility), normalise(target[:frames], visibility)
    if gen is None or tgt is None:
        return {}
    (pg, vg), (pt, vt) = gen, tgt
    both = vg & vt  # (F, J)
    if not both.any():
        return {}
    scores = {"joint_error": float(np.linalg.norm(pg - pt, axis=-1)[both].mean()),
              "detected": float((both[:, SHOULDERS + HIPS].all(axis=1)).mean())}
    moving = both[1:] & both[:-1]  # (F-1, J) joints seen in both frames of a step, in both videos
    if moving.any():
        step_g, step_t = (pg[1:] - pg[:-1])[moving], (pt[1:] - pt[:-1])[moving]  # (K, 2) each
        scores["motion_correlation"] = _correlation(step_g.ravel(), step_t.ravel())
    return scores


class MediaPipePose:
    """``video (F, 3, H, W) in [-1, 1] -> keypoints (F, 33, 3)`` with MediaPipe's legacy Pose solution.

    A fresh tracker per video (``static_image_mode=False`` tracks across frames); ``model_complexity=1``
    is the model the 0.10.21 wheel ships (0 and 2 would download).
    """

    def __init__(self, solution: Any, min_detection_confidence: float) -> None:
        self.solution, self.confidence = solution, min_detection_confidence

    def __call__(self, video: Any) -> np.ndarray:
        from flashctl.video import tensor_to_frames

        frames = tensor_to_frames(video)  # (F, H, W, 3) uint8
        height, width = frames.shape[1:3]
        keypoints = np.zeros((len(frames), LANDMARKS, 3))
        with self.solution.Pose(static_image_mode=False, model_complexity=1,
                                min_detection_confidence=self.confidence) as tracker:
            for i, frame in enumerate(frames):
                found = tracker.process(frame).pose_landmarks
                if found is not None:
                    keypoints[i] = [(p.x * width, p.y * height, p.visibility) for p in found.landmark]
        return keypoints


class PoseMetric:
    """Scores a generated video against its real continuation; ``{}`` without a target."""

    def __init__(self, detector: Callable[[Any], np.ndarray], visibility: float = 0.5) -> None:
        self.detector, self.visibility = detector, visibility

    def __call__(self, generated: Any, *, reference: Any, target: Any = None) -> dict[str, float]:
        if target is None:
            return {}
        return compare_trajectories(self.detector(generated), self.detector(target), self.visibility)


def build(options: Any, ctx: Any) -> PoseMetric:
    from flashctl.errors import WeightsNotFoundError

    hint = "pip install 'flashctl[pose]' (mediapipe==0.10.21; it pins numpy<2, so use a separate environment)"
    try:
        import mediapipe
    except ImportError:
        raise WeightsNotFoundError("metric 'pose' needs mediapipe==0.10.21, whose wheel ships the pose models; "
                                   "it is not installed", hint=hint) from None
    solutions = getattr(mediapipe, "solutions", None)
    if solutions is None:
        raise WeightsNotFoundError(f"metric 'pose': mediapipe {getattr(mediapipe, '__version__', '?')} has no "
                                   "bundled pose models (mediapipe.solutions)", hint=hint)
    return PoseMetric(MediaPipePose(solutions.pose, options.min_detection_confidence), options.visibility)
