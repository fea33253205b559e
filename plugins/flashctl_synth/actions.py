"""Actions as joint-angle trajectories over one cycle, phase p in [0, 1).

An :class:`Action` maps a phase and a clip's :class:`Motion` (amplitude, which limb leads, a small
style offset) to a :class:`Pose`. Angles are degrees. For the ``front`` view (the person faces
the camera) shoulder and hip angles are abduction (0 = hanging down, 90 = straight out sideways)
and ``torso`` bends sideways towards the leading side; for the ``side`` view they are flexion
(90 = pointing forward) and ``torso`` bends forward. Elbows bend the forearm further the same
way, knees fold the shin back. Limb angles are relative to the torso (arms) or the upright pelvis
(legs). ``lift`` raises the whole body off the floor (body heights); otherwise the lowest foot
stands on the floor.
Trajectories use eased keyframes, so every movement starts and ends softly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import UnknownActionError


@dataclass(frozen=True)
class Limbs:
    shoulder: float = 8.0
    elbow: float = 8.0
    hip: float = 3.0
    knee: float = 2.0


@dataclass(frozen=True)
class Pose:
    active: Limbs          # the leading arm and leg (waving arm, kicking leg, jabbing arm)
    other: Limbs
    torso: float = 0.0
    neck: float = 0.0
    lift: float = 0.0


@dataclass(frozen=True)
class Motion:
    """Per-clip variation of an action."""

    amplitude: float       # scales the movement, about 0.85..1.1
    period: float          # seconds per cycle
    phase0: float          # phase of the first frame
    active: str            # "left" | "right": the limb side that leads
    facing: int            # side view: +1 faces image right, -1 image left; 0 for the front view
    style: float           # -1..1, small posture differences (rest angles)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Action:
    name: str
    view: str              # "front" | "side"
    period: float          # typical seconds per cycle
    prompt: str
    trajectory: Callable[[float, Motion], Pose]

    def __call__(self, p: float, motion: Motion) -> Pose:
        return self.trajectory(p % 1.0, motion)


def smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3 - 2 * x)


def keyframes(p: float, keys: list[tuple[float, float]]) -> float:
    """Ease in and out between ``(phase, value)`` keys; the first key is at 0 and the last at 1."""
    for (t0, v0), (t1, v1) in zip(keys, keys[1:]):
        if p <= t1:
            return v0 + (v1 - v0) * smoothstep((p - t0) / (t1 - t0))
    return keys[-1][1]


def swing(p: float) -> float:
    """0 at p=0, 1 at p=0.5, back to 0: a harmonic out-and-back."""
    return 0.5 - 0.5 * math.cos(2 * math.pi * p)


def _jumping_jack(p: float, m: Motion) -> Pose:
    u = swing(p)
    hop = 0.035 * m.amplitude * abs(math.sin(2 * math.pi * p)) ** 2  # a small hop at each transition
    limbs = Limbs(shoulder=min(12 + 160 * u * m.amplitude, 178), elbow=8 + 18 * math.sin(math.pi * u),
                  hip=3 + 20 * u * m.amplitude, knee=4 * math.sin(math.pi * u))
    return Pose(limbs, limbs, lift=hop)


def _squat(p: float, m: Motion) -> Pose:
    u = keyframes(p, [(0, 0), (0.08, 0), (0.45, 1), (0.58, 1), (0.95, 0), (1, 0)]) * m.amplitude
    legs = Limbs(shoulder=10 + 75 * u, elbow=8 + 4 * m.style, hip=3 + 82 * u, knee=2 + 108 * u)
    return Pose(legs, legs, torso=40 * u, neck=-15 * u)


def _arm_wave(p: float, m: Motion) -> Pose:
    up = keyframes(p, [(0, 0), (0.05, 0), (0.22, 1), (0.82, 1), (0.98, 0), (1, 0)])
    wave = math.sin(2 * math.pi * 3 * (p - 0.22) / 0.6) if 0.22 < p < 0.82 else 0.0
    waving = Limbs(shoulder=10 + 120 * up, elbow=8 + up * (45 + 32 * m.amplitude * wave))
    resting = Limbs(shoulder=9 + 3 * m.style, elbow=10)
    return Pose(waving, resting, torso=-4 * up)


def _kick(p: float, m: Motion) -> Pose:
    a = m.amplitude
    hip = keyframes(p, [(0, 0), (0.1, 0), (0.32, 65 * a), (0.42, 82 * a), (0.56, 65 * a), (0.82, 0), (1, 0)])
    knee = keyframes(p, [(0, 2), (0.1, 2), (0.32, 100), (0.42, 5), (0.56, 100), (0.82, 2), (1, 2)])
    lean = keyframes(p, [(0, 0), (0.1, 0), (0.42, -14 * a), (0.82, 0), (1, 0)])
    arm = keyframes(p, [(0, 25), (0.1, 25), (0.42, -15), (0.82, 25), (1, 25)])
    kicking = Limbs(shoulder=arm, elbow=90, hip=hip, knee=knee)
    brace = keyframes(p, [(0, 0), (0.1, 0), (0.32, 1), (0.56, 1), (0.82, 0), (1, 0)])  # standing knee gives a bit
    standing = Limbs(shoulder=45 - arm, elbow=95, hip=-5 * brace, knee=2 + 6 * brace)
    return Pose(kicking, standing, torso=lean, neck=-lean / 2)


def _punch(p: float, m: Motion) -> Pose:
    guard, strike = (40.0, 125.0), (88.0 * m.amplitude, 4.0)

    def arm(t: float) -> tuple[float, float]:
        k = keyframes(p, [(0, 0), (t - 0.15, 0), (t, 1), (t + 0.15, 0), (1, 0)])
        return guard[0] + (strike[0] - guard[0]) * k, guard[1] + (strike[1] - guard[1]) * k

    (lead_s, lead_e), (rear_s, rear_e) = arm(0.28), arm(0.72)
    lean = 6 + 10 * keyframes(p, [(0, 0), (0.57, 0), (0.72, 1), (0.87, 0), (1, 0)])
    lead = Limbs(shoulder=lead_s, elbow=lead_e, hip=16 + 3 * m.style, knee=12)
    rear = Limbs(shoulder=rear_s, elbow=rear_e, hip=-14, knee=8)
    return Pose(lead, rear, torso=lean, neck=-lean)


def _jump(p: float, m: Motion) -> Pose:
    a = m.amplitude
    crouch = keyframes(p, [(0, 0), (0.05, 0), (0.26, 1), (0.33, 0), (0.58, 0.15), (0.68, 0.85), (0.92, 0), (1, 0)])
    arms = keyframes(p, [(0, 10), (0.05, 10), (0.26, -45), (0.36, 165), (0.58, 120), (0.68, 60), (0.92, 10), (1, 10)])
    t0, t1 = 0.33, 0.6
    lift = 4 * 0.2 * a * (p - t0) * (t1 - p) / (t1 - t0) ** 2 if t0 < p < t1 else 0.0  # a ballistic arc
    legs = Limbs(shoulder=arms, elbow=15, hip=3 + 60 * crouch, knee=2 + 95 * crouch)
    return Pose(legs, legs, torso=8 + 25 * crouch, neck=-10 * crouch, lift=lift)


def _bow(p: float, m: Motion) -> Pose:
    u = keyframes(p, [(0, 0), (0.08, 0), (0.42, 1), (0.6, 1), (0.94, 0), (1, 0)]) * m.amplitude
    limbs = Limbs(shoulder=20 * u, elbow=6 + 4 * m.style, hip=10 * u, knee=3 + 4 * u)
    return Pose(limbs, limbs, torso=72 * u, neck=8 * u)


def _side_bend(p: float, m: Motion) -> Pose:
    a = m.amplitude
    away = keyframes(p, [(0, 0), (0.05, 0), (0.25, 1), (0.32, 1), (0.5, 0), (1, 0)])     # bend away from active
    toward = keyframes(p, [(0, 0), (0.5, 0), (0.7, 1), (0.77, 1), (0.95, 0), (1, 0)])  # bend towards it
    reach = Limbs(shoulder=10 + 160 * away, elbow=10 + 15 * away, hip=9, knee=2)
    slide = Limbs(shoulder=10 + 160 * toward, elbow=10 + 15 * toward, hip=9, knee=2)
    return Pose(reach, slide, torso=32 * a * (toward - away))


def _soccer_shot(p: float, m: Motion) -> Pose:
    """A kick's delicate sibling: the leg winds up behind, strikes through and follows through high, leaning back."""
    a = m.amplitude
    hip = keyframes(p, [(0, 0), (0.1, 0), (0.3, -35 * a), (0.42, 55 * a), (0.54, 105 * a), (0.68, 70 * a), (0.9, 0),
                        (1, 0)])
    knee = keyframes(p, [(0, 2), (0.1, 2), (0.3, 100), (0.42, 25), (0.54, 5), (0.68, 30), (0.9, 2), (1, 2)])
    lean = keyframes(p, [(0, 0), (0.1, 0), (0.3, 10), (0.42, 0), (0.54, -24 * a), (0.68, -12 * a), (0.9, 0), (1, 0)])
    swing = keyframes(p, [(0, 15), (0.1, 15), (0.3, 75), (0.54, -45), (0.9, 15), (1, 15)])  # arms counter the leg
    brace = keyframes(p, [(0, 0), (0.1, 0), (0.36, 1), (0.68, 1), (0.9, 0), (1, 0)])  # the standing knee gives
    kicking = Limbs(shoulder=swing, elbow=35, hip=hip, knee=knee)
    standing = Limbs(shoulder=60 - swing, elbow=40, hip=-6 * brace, knee=2 + 18 * brace)
    return Pose(kicking, standing, torso=lean, neck=-lean / 2)


ACTIONS: dict[str, Action] = {a.name: a for a in (
    Action("jumping_jack", "front", 1.0, "a person doing jumping jacks", _jumping_jack),
    Action("squat", "side", 2.0, "a person doing a squat", _squat),
    Action("arm_wave", "front", 2.0, "a person waving one hand", _arm_wave),
    Action("kick", "side", 2.0, "a person doing a front kick", _kick),
    Action("punch", "side", 2.0, "a person punching, jab then cross", _punch),
    Action("jump", "side", 2.0, "a person jumping up in place", _jump),
    Action("bow", "side", 2.0, "a person bowing", _bow),
    Action("side_bend", "front", 2.0, "a person doing a side bend stretch", _side_bend),
    Action("soccer_shot", "side", 2.0, "a person shooting a soccer ball with follow-through", _soccer_shot),
)}


def _wander(view: str) -> Callable[[float, Motion], Pose]:
    """Random smooth poses in ``view``: from standing, through three random poses, back to standing.

    Not an action: a motion prior for pretraining a base (``scripts/pretrain_base.py --actions``) that has to
    move people in many ways without knowing the named actions. The poses come from the clip's ``style``
    (a per-clip random number), so a clip is the same every time it is rendered; every joint of each side
    draws its own targets within its natural range for the view.
    """
    side = view == "side"
    ranges = {"shoulder": (-40, 170) if side else (0, 170), "elbow": (5, 120), "hip": (-20, 90) if side else (0, 45),
              "knee": (2, 100) if side else (2, 40)}
    torso, neck = ((-10, 45), (-15, 15)) if side else ((-30, 30), (-10, 10))

    def trajectory(p: float, m: Motion) -> Pose:
        rng = np.random.default_rng(int((m.style + 1) * 2**30))
        at = (0.0, 0.1, 0.35, 0.6, 0.85, 1.0)  # rest, three random poses, rest

        def joint(rest: float, low: float, high: float) -> float:
            targets = rng.uniform(low, high, 3)
            return keyframes(p, list(zip(at, (rest, rest, *(rest + (t - rest) * m.amplitude for t in targets), rest))))

        def limbs() -> Limbs:
            rest = Limbs()
            return Limbs(**{name: joint(getattr(rest, name), *ranges[name]) for name in ranges})

        active, other = limbs(), limbs()
        return Pose(active, other, torso=joint(0.0, *torso), neck=joint(0.0, *neck))

    return trajectory


# Motion priors: renderable like actions (get_action), but not actions of the world: no metric, recognition or
# demo-motion check counts them
PRIOR_MOTIONS: dict[str, Action] = {a.name: a for a in (
    Action("wander_side", "side", 2.0, "a person moving", _wander("side")),
    Action("wander_front", "front", 2.0, "a person moving, facing the camera", _wander("front")),
)}


def get_action(name: str) -> Action:
    """A named action of the world, or a motion prior (:data:`PRIOR_MOTIONS`)."""
    found = ACTIONS.get(name) or PRIOR_MOTIONS.get(name)
    if found is None:
        raise UnknownActionError(f"unknown synthetic action {name!r}; available: {', '.join(ACTIONS)} "
                                 f"(motion priors for pretraining: {', '.join(PRIOR_MOTIONS)})",
                                 hint="pick one of the listed actions, e.g. `flashctl synth squat --out clips/`")
    return found


def sample_motion(rng: np.random.Generator, action: Action) -> Motion:
    """Amplitude +-12 %, speed +-15 %, a small phase offset, a random leading side and facing."""
    return Motion(
        amplitude=float(rng.uniform(0.88, 1.1)),
        period=float(action.period / rng.uniform(0.87, 1.15)),
        phase0=float(rng.uniform(0.0, 0.06)),
        active=("left", "right")[int(rng.integers(2))],
        facing=int(rng.choice((-1, 1))) if action.view == "side" else 0,
        style=float(rng.uniform(-1, 1)),
    )
