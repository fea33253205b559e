"""Which way a metric key is better, and ranking by it.

A direction is ``True`` (higher is better), ``False`` (lower is better), :data:`NEAR_ONE` (a ratio to
the real clip: 1.0 = like the real motion, and 2x is as far off as 0.5x) or ``None`` (no direction).
Light on purpose: metric plugins import it without pulling torch in.
"""

from __future__ import annotations

import math
from typing import Literal, Union

NEAR_ONE = "near 1"
Direction = Union[bool, Literal["near 1"], None]
ARROWS = {True: "↑", False: "↓", NEAR_ONE: "→1", None: ""}
LEGEND = "↑ higher is better, ↓ lower is better, →1 closest to 1 (the real clip's value) is best."


def badness(value: float, direction: Direction) -> float:
    """A number that is smaller for better values: ranks ``value`` under ``direction`` (not ``None``).

    Near-one values rank by ``|log value|``; zero or negative ratios rank last.
    """
    if direction == NEAR_ONE:
        return abs(math.log(value)) if value > 0 else math.inf
    return -value if direction else value


def best(values: list[float | None], direction: Direction) -> list[int]:
    """Indices of the best values (ties share it); empty without a direction or anything to choose between."""
    finite = {i: badness(v, direction) for i, v in enumerate(values) if v is not None and direction is not None}
    if len(set(finite.values())) < 2:
        return []
    top = min(finite.values())
    return [i for i, v in finite.items() if v == top]
