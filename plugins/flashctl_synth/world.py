"""Who is in a synthetic clip: body proportions, framing, and appearance drawn from a split's pool.

Two appearance pools, ``train`` and ``heldout``, share no palette entry and no style: every skin
tone, hair colour, clothing colour, shoe colour and background colour pair belongs to exactly one
pool, and so does every hair style, clothing pattern and background style. A model trained on
``train`` people and scored on ``heldout`` references has therefore never seen those appearances.
Body proportions, framing, sleeve and leg lengths are drawn from the same ranges in both pools.
A third split, ``pose``, trains the keypoint estimator (:mod:`.keypoint_net`) and no evaluation
uses it: every colour is uniformly random RGB and every style of both pools is possible.
A fourth split, ``drawn``, is a flat cartoon like ``examples/drawn_figure.png``, for scoring on a picture
unlike the training world: plain clothes, every body part outlined in dark ink, on warm paper with a floor
band. Its palette (skin, hair, clothes, shoes, paper, floor and ink) shares no entry with either pool; it
takes the hair styles of both. Body proportions and framing are drawn as for the other splits.
All lengths are fractions of the standing body height.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import SynthSettingError

Color = tuple[int, int, int]

SPLITS = ("train", "heldout", "pose", "drawn")  # a split's index seeds its people: append, never reorder
POSE_SPLIT = "pose"
DRAWN_SPLIT = "drawn"

# Every palette is split by alternating entries, so each pool spans the whole range (light to dark).
SKIN_TONES: tuple[Color, ...] = (
    (255, 224, 196), (247, 208, 172), (241, 194, 150), (229, 184, 140), (222, 171, 127), (205, 150, 105),
    (190, 133, 92), (168, 112, 76), (141, 90, 61), (118, 74, 50), (94, 58, 40), (72, 45, 32),
)
HAIR_COLORS: tuple[Color, ...] = (
    (20, 16, 14), (45, 30, 20), (84, 52, 30), (120, 70, 35), (160, 90, 40), (196, 150, 80),
    (230, 205, 140), (180, 180, 175), (235, 235, 225), (150, 45, 30), (60, 60, 140), (200, 80, 150),
)
CLOTH_COLORS: tuple[Color, ...] = (
    (200, 40, 40), (230, 90, 60), (240, 150, 40), (245, 210, 60), (150, 190, 50), (60, 150, 70),
    (30, 110, 80), (40, 170, 160), (50, 130, 200), (40, 70, 160), (90, 60, 170), (150, 70, 170),
    (220, 100, 160), (240, 240, 240), (190, 190, 190), (110, 110, 115), (40, 40, 45), (120, 80, 50),
    (200, 170, 120), (90, 110, 60), (160, 40, 80), (20, 50, 90), (250, 180, 180), (170, 220, 240),
)
SHOE_COLORS: tuple[Color, ...] = (
    (30, 30, 30), (245, 245, 245), (110, 70, 40), (200, 50, 50), (60, 90, 160), (150, 150, 150),
)
BACKGROUND_PAIRS: tuple[tuple[Color, Color], ...] = (
    ((200, 215, 230), (120, 140, 160)), ((235, 225, 200), (170, 150, 120)), ((190, 220, 190), (90, 130, 90)),
    ((230, 200, 200), (150, 100, 100)), ((210, 200, 230), (110, 100, 150)), ((220, 220, 220), (130, 130, 130)),
    ((160, 200, 230), (80, 120, 70)), ((250, 235, 210), (200, 120, 80)), ((60, 70, 90), (25, 30, 40)),
    ((240, 240, 200), (180, 170, 90)), ((200, 230, 230), (70, 140, 150)), ((120, 100, 90), (60, 50, 45)),
    ((235, 210, 230), (170, 130, 160)), ((180, 190, 160), (100, 110, 80)), ((170, 200, 255), (150, 120, 80)),
    ((210, 190, 170), (100, 80, 60)),
)
# The drawn split's own palette (paper, floor band) pairs and ink: none of these is in the entries above.
DRAWN_SKIN: tuple[Color, ...] = ((250, 210, 170), (236, 196, 160), (214, 162, 120), (180, 126, 88), (132, 88, 60),
                                 (98, 66, 46))
DRAWN_HAIR: tuple[Color, ...] = ((120, 60, 140), (30, 24, 40), (200, 120, 40), (90, 50, 40), (230, 190, 90),
                                 (60, 110, 150))
DRAWN_CLOTHES: tuple[Color, ...] = (
    (60, 140, 200), (235, 75, 75), (250, 200, 50), (90, 180, 110), (160, 100, 200), (240, 130, 170),
    (40, 90, 130), (210, 120, 50), (120, 200, 200), (100, 80, 170), (245, 160, 60), (70, 160, 90),
)
DRAWN_SHOES: tuple[Color, ...] = ((70, 40, 30), (50, 50, 70), (180, 40, 60))
DRAWN_PAPERS: tuple[tuple[Color, Color], ...] = (
    ((246, 236, 214), (214, 190, 150)), ((242, 230, 204), (206, 182, 142)), ((249, 241, 222), (222, 198, 160)),
    ((240, 226, 198), (200, 172, 134)),
)
INKS: tuple[Color, ...] = ((40, 32, 30), (30, 30, 40), (55, 40, 35), (25, 35, 55))


@dataclass(frozen=True)
class Pool:
    """The appearance choices one split draws from."""

    skin: tuple[Color, ...]
    hair_colors: tuple[Color, ...]
    hair_styles: tuple[str, ...]
    cloth_colors: tuple[Color, ...]
    shoe_colors: tuple[Color, ...]
    patterns: tuple[str, ...]
    backgrounds: tuple[str, ...]
    background_pairs: tuple[tuple[Color, Color], ...]
    inks: tuple[Color, ...] = ()  # outline colours; none: no outlines


def _half(entries: tuple, split: int) -> tuple:
    return entries[split::2]


POOLS: dict[str, Pool] = {
    name: Pool(
        skin=_half(SKIN_TONES, i),
        hair_colors=_half(HAIR_COLORS, i),
        hair_styles=(("short", "long"), ("bun", "ponytail"))[i],
        cloth_colors=_half(CLOTH_COLORS, i),
        shoe_colors=_half(SHOE_COLORS, i),
        patterns=(("plain", "stripes"), ("pinstripes", "checks"))[i],
        backgrounds=(("flat", "gradient", "room"), ("noise", "tiles", "outdoor"))[i],
        background_pairs=_half(BACKGROUND_PAIRS, i),
    )
    for i, name in enumerate(SPLITS[:2])  # the pooled splits, train and heldout
}
POOLS[DRAWN_SPLIT] = Pool(
    skin=DRAWN_SKIN, hair_colors=DRAWN_HAIR, hair_styles=POOLS["train"].hair_styles + POOLS["heldout"].hair_styles,
    cloth_colors=DRAWN_CLOTHES, shoe_colors=DRAWN_SHOES, patterns=("plain",), backgrounds=("paper",),
    background_pairs=DRAWN_PAPERS, inks=INKS,
)


def _random_pool(rng: np.random.Generator) -> Pool:
    """One person's choices in the ``pose`` split: random colours (enough for distinct picks), all styles."""

    def colours(n: int) -> tuple[Color, ...]:
        return tuple(tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(n))

    both = [POOLS[name] for name in SPLITS[:2]]
    return Pool(
        skin=colours(1), hair_colors=colours(1), hair_styles=tuple(s for p in both for s in p.hair_styles),
        cloth_colors=colours(4), shoe_colors=colours(1), patterns=tuple(s for p in both for s in p.patterns),
        backgrounds=tuple(s for p in both for s in p.backgrounds),
        background_pairs=(tuple(colours(2)),),
    )


@dataclass(frozen=True)
class Appearance:
    """Colours and styles of one person and their scene; every colour comes from one pool."""

    skin: Color
    hair_color: Color
    hair_style: str
    shirt: Color
    shirt_accent: Color       # second colour of the shirt pattern
    shirt_pattern: str
    sleeves: str              # "short" | "long"
    pants: Color
    pants_accent: Color
    pants_pattern: str
    legwear: str              # "shorts" | "long"
    shoes: Color
    pattern_period: float     # body heights per pattern repeat
    background: str
    background_colors: tuple[Color, Color]
    texture_seed: int         # fixes the background's noise and scenery
    ink: Color | None = None  # every body part outlined in this colour (the drawn split); None: no outlines

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Body:
    """Proportions (fractions of standing height) and where the person stands in the frame."""

    head_rx: float
    head_ry: float
    neck: float
    torso: float
    shoulder_half: float
    chest_half: float
    waist_half: float
    hip_half: float
    upper_arm: float
    forearm: float
    arm_width: float          # radius at the shoulder; the forearm tapers from 0.8 of it
    hand: float
    thigh: float
    shin: float
    leg_width: float          # radius at the hip; the shin tapers from 0.75 of it
    foot: float
    height: float             # standing height as a fraction of the frame height
    anchor_x: float           # where the planted feet stand, fraction of the frame width
    ground_y: float           # the floor line, fraction of the frame height

    def to_dict(self) -> dict:
        return asdict(self)


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise SynthSettingError(f"appearance split {split!r} is not one of: {', '.join(SPLITS)}",
                                hint=f"use --appearance-split with one of: {', '.join(SPLITS)}")


def _pick(rng: np.random.Generator, options: tuple) -> object:
    return options[int(rng.integers(len(options)))]


def sample_appearance(rng: np.random.Generator, split: str) -> Appearance:
    check_split(split)
    pool = _random_pool(rng) if split == POSE_SPLIT else POOLS[split]
    shirt, shirt_accent, pants, pants_accent = (pool.cloth_colors[i] for i in
                                                rng.choice(len(pool.cloth_colors), 4, replace=False))
    patterned_pants = rng.random() < 0.3
    return Appearance(
        skin=_pick(rng, pool.skin),
        hair_color=_pick(rng, pool.hair_colors),
        hair_style=_pick(rng, pool.hair_styles),
        shirt=shirt,
        shirt_accent=shirt_accent,
        shirt_pattern=_pick(rng, pool.patterns),
        sleeves=_pick(rng, ("short", "long")),
        pants=pants,
        pants_accent=pants_accent,
        pants_pattern=_pick(rng, pool.patterns) if patterned_pants else pool.patterns[0],
        legwear=_pick(rng, ("shorts", "long", "long")),
        shoes=_pick(rng, pool.shoe_colors),
        pattern_period=float(rng.uniform(0.06, 0.09)),
        background=_pick(rng, pool.backgrounds),
        background_colors=_pick(rng, pool.background_pairs),
        texture_seed=int(rng.integers(2**31)),
        ink=_pick(rng, pool.inks) if pool.inks else None,
    )


def sample_body(rng: np.random.Generator) -> Body:
    """Proportions vary about +-10 % per length, girth -20 %..+30 %; the pose fits in the frame."""

    def vary(value: float, spread: float = 0.1) -> float:
        return float(value * rng.uniform(1 - spread, 1 + spread))

    girth = float(rng.uniform(0.8, 1.3))
    head = vary(1.0, 0.08)
    shoulder_half = vary(0.095)
    return Body(
        head_rx=0.055 * head, head_ry=0.066 * head, neck=vary(0.035, 0.2), torso=vary(0.29, 0.07),
        shoulder_half=shoulder_half, chest_half=shoulder_half * 0.95 * min(girth, 1.15),
        waist_half=0.068 * girth, hip_half=vary(0.05),
        upper_arm=vary(0.165, 0.07), forearm=vary(0.145, 0.07), arm_width=0.027 * girth ** 0.7, hand=vary(0.024),
        thigh=vary(0.235, 0.07), shin=vary(0.225, 0.07), leg_width=0.043 * girth ** 0.7, foot=vary(0.07),
        height=float(rng.uniform(0.5, 0.64)), anchor_x=float(rng.uniform(0.4, 0.6)),
        ground_y=float(rng.uniform(0.87, 0.95)),
    )
