"""Drawing one person from a :class:`~.skeleton.Skeleton` with PIL, at the supersampled size.

Limbs are tapered capsules; clothes are capsules or quads in the clothing colour with the pattern
(stripes, pinstripes, checks) laid out along the body part, so patterns move with the limbs.
In the side view the far arm and leg are drawn first and darker. A person with an ``ink`` colour (the
drawn split) is outlined: each shape is drawn first in ink, grown by the line width, then filled, so every
body part shows an ink edge where it overlaps what was drawn before.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import ImageDraw

from .skeleton import SIDES, Skeleton
from .world import Appearance, Body, Color

FAR_SHADE = 0.78
EYE = (35, 28, 28)
INK_WIDTH = 0.022  # outline width, in standing body heights


def shade(color: Color, k: float) -> Color:
    return tuple(int(min(255, c * k)) for c in color)  # type: ignore[return-value]


def _pt(p: np.ndarray) -> tuple[float, float]:
    return float(p[0]), float(p[1])


def pattern_cells(pattern: str, length: float, width: float, period: float) -> list[tuple[float, float, float, float]]:
    """Accent cells ``(u0, u1, v0, v1)``: u in [-1, 1] across the part, v in [0, 1] along it."""
    if pattern == "plain" or length <= 0:
        return []
    if pattern == "stripes":
        starts = np.arange(period / 2, length, period)
        return [(-1.0, 1.0, s / length, min(s + period / 2, length) / length) for s in starts]
    if pattern == "pinstripes":
        columns = max(2, round(2 * width / (period / 2)))
        return [(-1 + (c + 0.5 - 0.15) * 2 / columns, -1 + (c + 0.5 + 0.15) * 2 / columns, 0.0, 1.0)
                for c in range(columns)]
    if pattern == "checks":
        half = period / 2
        across = max(2, round(2 * width / half))
        along = int(np.ceil(length / half))
        return [(-1 + a * 2 / across, -1 + (a + 1) * 2 / across, b * half / length,
                 min((b + 1) * half, length) / length) for a in range(across) for b in range(along) if (a + b) % 2]
    raise ValueError(f"unknown pattern {pattern!r}")


class Pen:
    """Shapes in pixel coordinates on one PIL image; with an ``ink`` colour each is outlined ``line`` px wide."""

    def __init__(self, draw: ImageDraw.ImageDraw, period: float, ink: Color | None = None, line: float = 0.0) -> None:
        self.draw, self.period, self.ink, self.line = draw, period, ink, line

    def _inked(self, fill: Color, shape: Callable[[Color, float], None], outline: bool = True) -> None:
        """``shape(colour, grow)`` drawn in ink grown by the line width (when outlining), then in ``fill``."""
        if outline and self.ink is not None:
            shape(self.ink, self.line)
        shape(fill, 0.0)

    def _circle(self, c: np.ndarray, r: float, fill: Color) -> None:
        self.draw.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=fill)

    def _quad(self, p0: np.ndarray, p1: np.ndarray, r0: float, r1: float, fill: Color) -> None:
        """The quad around p0..p1 with half-widths r0 at p0 and r1 at p1."""
        axis = p1 - p0
        n = np.array([-axis[1], axis[0]]) / max(float(np.hypot(*axis)), 1e-6)
        self.draw.polygon([_pt(p0 + n * r0), _pt(p1 + n * r1), _pt(p1 - n * r1), _pt(p0 - n * r0)], fill=fill)

    def disc(self, c: np.ndarray, r: float, fill: Color, outline: bool = True) -> None:
        self._inked(fill, lambda colour, grow: self._circle(c, r + grow, colour), outline)

    def capsule(self, p0: np.ndarray, p1: np.ndarray, r0: float, r1: float, fill: Color) -> None:
        def shape(colour: Color, grow: float) -> None:
            self._circle(p0, r0 + grow, colour)
            self._circle(p1, r1 + grow, colour)
            if float(np.hypot(*(p1 - p0))) > 1e-6:
                self._quad(p0, p1, r0 + grow, r1 + grow, colour)

        self._inked(fill, shape)

    def cloth(self, p0: np.ndarray, p1: np.ndarray, r0: float, r1: float, colors: tuple[Color, Color], pattern: str,
              caps: bool = True) -> None:
        """A garment part from p0 to p1 (half-widths r0, r1): base colour, then the pattern's accent cells."""
        axis = p1 - p0
        length = float(np.hypot(*axis))
        n = np.array([-axis[1], axis[0]]) / max(length, 1e-6)
        if caps:
            self.capsule(p0, p1, r0, r1, colors[0])
        else:
            along = axis / max(length, 1e-6)
            self._inked(colors[0], lambda colour, grow: self._quad(p0 - along * grow, p1 + along * grow, r0 + grow,
                                                                   r1 + grow, colour))

        def at(u: float, v: float) -> tuple[float, float]:
            return _pt(p0 + axis * v + n * u * (r0 + (r1 - r0) * v))

        for u0, u1, v0, v1 in pattern_cells(pattern, length, (r0 + r1) / 2, self.period):
            self.draw.polygon([at(u0, v0), at(u1, v0), at(u1, v1), at(u0, v1)], fill=colors[1])

    def oval(self, c: np.ndarray, up: np.ndarray, fwd: np.ndarray, rx: float, ry: float, fill: Color) -> None:
        """An ellipse turned with the head: ``up`` and ``fwd`` are its unit axes."""
        t = np.linspace(0, 2 * np.pi, 28, endpoint=False)

        def shape(colour: Color, grow: float) -> None:
            points = c + np.outer(np.cos(t), up) * (ry + grow) + np.outer(np.sin(t), fwd) * (rx + grow)  # (28, 2)
            self.draw.polygon([_pt(p) for p in points], fill=colour)

        self._inked(fill, shape)


class PersonPainter:
    """Draws a person with one body and appearance, pose by pose."""

    def __init__(self, body: Body, look: Appearance) -> None:
        self.body, self.look = body, look

    def draw(self, draw: ImageDraw.ImageDraw, sk: Skeleton) -> None:
        pen = Pen(draw, self.look.pattern_period * sk.scale, self.look.ink, INK_WIDTH * sk.scale)
        near = "right" if sk.facing > 0 else "left"
        far = "left" if near == "right" else "right"
        if sk.view == "front":
            self._back_hair(pen, sk, behind_torso=True)
            for side in SIDES:
                self._leg(pen, sk, side, 1.0)
            self._torso(pen, sk)
            self._head(pen, sk)
            for side in SIDES:
                self._arm(pen, sk, side, 1.0)
        else:
            self._arm(pen, sk, far, FAR_SHADE)
            self._leg(pen, sk, far, FAR_SHADE)
            self._leg(pen, sk, near, 1.0)
            self._torso(pen, sk)
            self._back_hair(pen, sk, behind_torso=False)
            self._head(pen, sk)
            self._arm(pen, sk, near, 1.0)

    def _arm(self, pen: Pen, sk: Skeleton, side: str, k: float) -> None:
        b, look, s = self.body, self.look, sk.scale
        shoulder, elbow, wrist = (sk.joints[f"{side}_{j}"] for j in ("shoulder", "elbow", "wrist"))
        ra, rf, rw = b.arm_width * s, 0.8 * b.arm_width * s, 0.62 * b.arm_width * s
        skin = shade(look.skin, k)
        shirt = (shade(look.shirt, k), shade(look.shirt_accent, k))
        pen.capsule(shoulder, elbow, ra, rf, skin)
        pen.capsule(elbow, wrist, rf, rw, skin)
        reach = (wrist - elbow) / max(float(np.hypot(*(wrist - elbow))), 1e-6)
        pen.disc(wrist + reach * b.hand * 0.5 * s, b.hand * s, skin)
        if look.sleeves == "short":
            pen.cloth(shoulder, shoulder + (elbow - shoulder) * 0.55, ra * 1.12, ra * 1.02, shirt, look.shirt_pattern)
        else:
            pen.cloth(shoulder, elbow, ra * 1.1, rf * 1.12, shirt, look.shirt_pattern)
            pen.cloth(elbow, wrist - reach * rw * 0.5, rf * 1.12, rw * 1.15, shirt, look.shirt_pattern)

    def _leg(self, pen: Pen, sk: Skeleton, side: str, k: float) -> None:
        b, look, s = self.body, self.look, sk.scale
        hip, knee, ankle = (sk.joints[f"{side}_{j}"] for j in ("hip", "knee", "ankle"))
        rt, rk, ra = b.leg_width * s, 0.75 * b.leg_width * s, 0.5 * b.leg_width * s
        pants = (shade(look.pants, k), shade(look.pants_accent, k))
        if look.legwear == "shorts":
            skin = shade(look.skin, k)
            pen.capsule(hip, knee, rt, rk, skin)
            pen.capsule(knee, ankle, rk, ra, skin)
            pen.cloth(hip, hip + (knee - hip) * 0.6, rt * 1.08, rt * 0.98, pants, look.pants_pattern)
        else:
            pen.cloth(hip, knee, rt * 1.05, rk * 1.08, pants, look.pants_pattern)
            pen.cloth(knee, ankle, rk * 1.08, ra * 1.2, pants, look.pants_pattern)
        pen.capsule(ankle, sk.toes[side], 0.45 * b.leg_width * s, 0.38 * b.leg_width * s, shade(look.shoes, k))

    def _torso(self, pen: Pen, sk: Skeleton) -> None:
        b, look, s, j = self.body, self.look, sk.scale, sk.joints
        pants = (look.pants, look.pants_accent)
        hips = (j["right_hip"], j["left_hip"]) if sk.view == "front" else (j["pelvis"], j["pelvis"])
        pen.cloth(hips[0], hips[1], b.leg_width * s * 1.1, b.leg_width * s * 1.1, pants, look.pants_pattern)
        head_dir = (j["head"] - j["neck"]) / max(float(np.hypot(*(j["head"] - j["neck"]))), 1e-6)
        pen.capsule(j["neck"] - head_dir * 0.02 * s, j["neck"] + head_dir * b.neck * s * 1.6, 0.022 * s, 0.02 * s,
                    look.skin)
        shirt = (look.shirt, look.shirt_accent)
        if sk.view == "front":
            hem = j["pelvis"] - sk.torso_up * 0.035 * s
            pen.cloth(hem, j["neck"], b.waist_half * s, b.chest_half * s, shirt, look.shirt_pattern, caps=False)
            for side in SIDES:  # rounded shoulders
                pen.disc(j[f"{side}_shoulder"], b.arm_width * s * 1.12, look.shirt)
        else:  # chest and waist are about 2/3 as deep as they are wide
            hem = j["pelvis"] + sk.torso_up * 0.02 * s
            top = j["neck"] - sk.torso_up * 0.03 * s
            pen.cloth(hem, top, b.waist_half * s * 0.7, b.chest_half * s * 0.65, shirt, look.shirt_pattern)

    @staticmethod
    def _head_frame(sk: Skeleton) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Head centre, its up axis and its forward axis (towards image right in the front view)."""
        up = sk.head_up
        return sk.joints["head"], up, np.array([-up[1], up[0]]) * sk.facing

    def _back_hair(self, pen: Pen, sk: Skeleton, behind_torso: bool) -> None:
        b, look, s = self.body, self.look, sk.scale
        c, up, fwd = self._head_frame(sk)
        rx, ry = b.head_rx * s, b.head_ry * s
        if look.hair_style == "long":
            if behind_torso:
                pen.capsule(c, c - up * ry * 1.6, rx * 1.15, rx * 1.05, look.hair_color)
            else:
                tip = c - up * ry * 1.6 - fwd * rx * 0.75
                pen.capsule(c - fwd * rx * 0.3, tip, rx * 0.8, rx * 0.5, look.hair_color)
        elif look.hair_style == "ponytail":
            root = c + up * ry * 0.3 - fwd * rx * (0.2 if behind_torso else 0.9)
            tip = c - up * ry * 1.4 - fwd * rx * (-0.9 if behind_torso else 1.3)
            pen.capsule(root, tip, rx * 0.38, rx * 0.2, look.hair_color)

    def _head(self, pen: Pen, sk: Skeleton) -> None:
        b, look, s = self.body, self.look, sk.scale
        c, up, fwd = self._head_frame(sk)
        side = sk.view == "side"
        rx, ry = b.head_rx * s * (1.1 if side else 1.0), b.head_ry * s
        if look.hair_style == "bun":
            pen.disc(c + up * ry * 1.0 - fwd * rx * (0.45 if side else 0.0), rx * 0.45, look.hair_color)
        pen.oval(c, up, fwd, rx * 1.07, ry * 1.07, look.hair_color)
        face = c - up * ry * 0.2 + fwd * rx * (0.22 if side else 0.0)
        pen.oval(face, up, fwd, rx * (0.82 if side else 0.93), ry * 0.84, look.skin)
        eyes = (0.55,) if side else (-0.4, 0.4)
        for e in eyes:
            pen.disc(face + up * ry * 0.12 + fwd * rx * e, 0.1 * rx, EYE, outline=False)
        if side:
            pen.disc(face + fwd * rx * 0.82 - up * ry * 0.05, 0.16 * rx, look.skin, outline=False)  # nose
