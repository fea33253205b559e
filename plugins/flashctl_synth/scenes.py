"""Backgrounds, drawn once per clip (the camera does not move), and the shadow under the feet.

Styles: ``flat``, ``gradient`` and ``room`` (wall, floor boards) belong to the train pool;
``noise``, ``tiles`` (a chequered floor in perspective) and ``outdoor`` (sky, hills, ground) to the
held-out pool; ``paper`` (plain paper with a floor band whose top edge is near the feet) to the drawn split.
Random texture comes from the appearance's ``texture_seed``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .world import Appearance, Body, Color


def _rgb(array: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "RGB")


def _mix(a: Color, b: Color, t: np.ndarray) -> np.ndarray:
    """Blend two colours by ``t`` (any shape) -> t.shape + (3,)."""
    t = t[..., None]
    return np.asarray(a, float) * (1 - t) + np.asarray(b, float) * t


def _smooth_noise(rng: np.random.Generator, width: int, height: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1], (height, width): a random cells x cells grid, bicubically upsampled."""
    grid = Image.fromarray((rng.random((cells, cells)) * 255).astype(np.uint8), "L")
    return np.asarray(grid.resize((width, height), Image.Resampling.BICUBIC), float) / 255


def background(look: Appearance, body: Body, width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(look.texture_seed)
    light, dark = look.background_colors
    ys = np.linspace(0, 1, height)[:, None] * np.ones((1, width))          # (H, W) 0 at the top
    floor_y = body.ground_y * height
    horizon = int(floor_y - rng.uniform(0.1, 0.22) * height)               # where wall or sky meets the floor
    if look.background == "flat":
        return Image.new("RGB", (width, height), light)
    if look.background == "gradient":
        return _rgb(_mix(light, dark, ys))
    if look.background == "noise":
        t = 0.7 * _smooth_noise(rng, width, height, 6) + 0.3 * _smooth_noise(rng, width, height, 24)
        return _rgb(_mix(light, dark, t))
    rows = np.arange(height)[:, None] * np.ones((1, width))                 # (H, W) pixel row
    floor = rows >= horizon
    if look.background == "room":
        stripes = (np.arange(width)[None, :] // max(2, width // 12)) % 2   # wallpaper
        wall = _mix(light, dark, 0.08 * stripes * np.ones((height, 1)))
        depth = (rows - horizon) / max(height - horizon, 1)
        boards = (np.floor(np.sqrt(np.clip(depth, 0, 1)) * 7) % 2) * 0.12   # boards widen towards the camera
        image = np.where(floor[..., None], _mix(dark, light, 0.15 + boards), wall)
        image[max(horizon - max(1, height // 90), 0):horizon + 1] = np.asarray(dark) * 0.7  # skirting board
        return _rgb(image)
    if look.background == "tiles":
        distance = height / np.maximum(rows - horizon + 1, 1)               # (H, W) farther near the horizon
        across = (np.arange(width)[None, :] - width / 2) / width * distance
        checker = (np.floor(across * 3) + np.floor(distance * 2)) % 2
        image = np.where(floor[..., None], _mix(light, dark, 0.35 + 0.45 * checker), _mix(light, dark, 0.05 * ys))
        return _rgb(image)
    if look.background == "paper":
        band = rows >= floor_y - rng.uniform(0.0, 0.04) * height
        return _rgb(np.where(band[..., None], np.asarray(dark, float), np.asarray(light, float)))
    if look.background == "outdoor":
        sky = _mix((235, 240, 250), light, ys * height / max(horizon, 1))
        ground = _mix(dark, np.asarray(dark) * 0.8, _smooth_noise(rng, width, height, 16))
        image = _rgb(np.where(floor[..., None], ground, sky))
        draw = ImageDraw.Draw(image)
        xs = np.linspace(0, width, 40)
        phase, amp = rng.uniform(0, 2 * np.pi), rng.uniform(0.04, 0.09) * height
        hills = [(float(x), float(horizon - amp * (1 + np.sin(x / width * 5 + phase)) / 2)) for x in xs]
        draw.polygon(hills + [(width, horizon), (0, horizon)], fill=tuple(int(c * 0.85) for c in dark))
        sun = rng.uniform(0.1, 0.9) * width, rng.uniform(0.08, 0.25) * height
        r = 0.05 * height
        draw.ellipse([sun[0] - r, sun[1] - r, sun[0] + r, sun[1] + r], fill=(250, 235, 170))
        return image
    raise ValueError(f"unknown background style {look.background!r}")


def draw_shadow(image: Image.Image, x: float, floor_y: float, scale: float, lift: float) -> None:
    """A soft dark ellipse on the floor under the person; it shrinks as they rise."""
    k = max(0.4, 1 - 2.5 * lift / scale)
    rx, ry = 0.16 * scale * k, 0.022 * scale * k
    ImageDraw.Draw(image, "RGBA").ellipse([x - rx, floor_y - ry, x + rx, floor_y + ry], fill=(0, 0, 0, int(70 * k)))
