"""Forward kinematics: a :class:`~.actions.Pose` and a :class:`~.world.Body` to joint positions in pixels.

The pelvis is the root. After the limbs are placed, the body is moved so that the lowest foot
stands on the floor line (raised by the pose's ``lift``) and the planted feet stay at the body's
``anchor_x``: a foot counts as planted in proportion to how close it is to the floor, so the
anchor passes smoothly to the standing leg when the other one lifts. Image angles: 0 points down,
+90 degrees points to image right (x right, y down).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .actions import Limbs, Motion, Pose
from .world import Body

JOINTS = (
    "head", "neck",
    "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
    "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
)
SIDES = ("right", "left")


def direction(angle: float) -> np.ndarray:
    return np.array([math.sin(angle), math.cos(angle)])  # (2,) unit vector, x right, y down


@dataclass(frozen=True)
class Skeleton:
    """Joint positions in pixels plus what drawing needs beyond the joints."""

    joints: dict[str, np.ndarray]   # name -> (2,) pixel position
    toes: dict[str, np.ndarray]     # side -> (2,) tip of the foot
    torso_up: np.ndarray            # (2,) unit vector, pelvis to neck
    head_up: np.ndarray             # (2,) unit vector, neck to the top of the head
    scale: float                    # pixels per body height
    view: str
    facing: int                     # +1 / -1 in the side view; +1 in the front view
    lift: float                     # pixels the feet are above the floor at most

    def keypoints(self, divide: float = 1.0) -> list[list[float]]:
        return [[round(float(v) / divide, 3) for v in self.joints[name]] for name in JOINTS]


def _signs(view: str, motion: Motion) -> dict[str, int]:
    """How each side's abduction/flexion turns in the image: +1 counter-clockwise seen from the front."""
    if view == "front":
        return {"left": 1, "right": -1}
    return {"left": motion.facing, "right": motion.facing}


def pose_skeleton(pose: Pose, motion: Motion, view: str, body: Body, width: int, height: int) -> Skeleton:
    sign = _signs(view, motion)
    limbs: dict[str, Limbs] = {motion.active: pose.active,
                               ("right" if motion.active == "left" else "left"): pose.other}
    bend = sign[motion.active] if view == "front" else motion.facing  # which way +torso turns
    torso_angle = math.pi - bend * math.radians(pose.torso)
    head_angle = torso_angle - bend * math.radians(pose.neck)
    up = direction(torso_angle)
    across = direction(torso_angle - math.pi / 2)                     # figure's left in the front view

    j: dict[str, np.ndarray] = {"pelvis": np.zeros(2), "neck": up * body.torso}
    j["head"] = j["neck"] + direction(head_angle) * (body.neck + body.head_ry)
    feet: dict[str, np.ndarray] = {}
    front = view == "front"
    for side in SIDES:
        s, limb = sign[side], limbs[side]
        shoulder = j["neck"] + (across * s * body.shoulder_half if front else 0)
        hip = np.array([s * body.hip_half, 0.0]) if front else np.zeros(2)
        upper = torso_angle - math.pi + s * math.radians(limb.shoulder)
        fore = upper + s * math.radians(limb.elbow)
        thigh = s * math.radians(limb.hip)
        shin = thigh - s * math.radians(limb.knee)
        j[f"{side}_shoulder"] = shoulder
        j[f"{side}_elbow"] = shoulder + direction(upper) * body.upper_arm
        j[f"{side}_wrist"] = j[f"{side}_elbow"] + direction(fore) * body.forearm
        j[f"{side}_hip"] = hip
        j[f"{side}_knee"] = hip + direction(thigh) * body.thigh
        j[f"{side}_ankle"] = j[f"{side}_knee"] + direction(shin) * body.shin
        foot_turn, foot_len = (math.radians(70), 0.55 * body.foot) if front else (math.pi / 2, body.foot)
        feet[side] = j[f"{side}_ankle"] + direction(shin + s * foot_turn) * foot_len

    ankles = np.stack([j[f"{side}_ankle"] for side in SIDES])          # (2, 2) right, left
    lowest = ankles[:, 1].max()
    planted = np.exp(-(((lowest - ankles[:, 1]) / 0.03) ** 2))          # (2,) 1 on the floor, ~0 when raised
    anchor = float((planted * ankles[:, 0]).sum() / planted.sum())
    scale = body.height * height
    sole = 0.45 * body.leg_width                                         # ankle centre to the sole
    origin = np.array([body.anchor_x * width - scale * anchor,
                       body.ground_y * height - scale * (lowest + sole + pose.lift)])
    return Skeleton(
        joints={name: origin + scale * p for name, p in j.items()},
        toes={side: origin + scale * p for side, p in feet.items()},
        torso_up=up, head_up=direction(head_angle), scale=scale, view=view,
        facing=motion.facing or 1, lift=scale * pose.lift,
    )
