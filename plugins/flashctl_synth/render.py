"""Render synthetic action clips with ground-truth keypoints, and write them as mp4 + JSON.

Everything is a pure function of ``(action, seed, split)`` and the clip geometry. The person
(body, clothes, scene) depends on ``seed`` and ``split`` only, so the same seed shows the same
person doing every action; the motion variation also depends on the action. Frames are drawn at
4x (2x above 128 px) and downsampled with LANCZOS. Keypoints are in output pixels: x right, y down,
(0, 0) the top-left corner of the image.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from flashctl.progress import NullReporter, Reporter

from .actions import get_action, sample_motion
from .errors import SynthSettingError
from .figure import PersonPainter
from .scenes import background, draw_shadow
from .skeleton import JOINTS, pose_skeleton
from .world import SPLITS, check_split, sample_appearance, sample_body


def _check(frames: int, size: int, fps: float, seed: int) -> None:
    problems = [
        (frames < 1, f"frames={frames}", "frames must be at least 1"),
        (not 16 <= size <= 1024, f"size={size}", "size must be between 16 and 1024 pixels"),
        (not fps > 0, f"fps={fps}", "fps must be positive"),
        (seed < 0, f"seed={seed}", "seed must be 0 or more"),
    ]
    for bad, value, hint in problems:
        if bad:
            raise SynthSettingError(f"synthetic clip setting {value} is out of range", hint=hint)


def render_clip(action: str, *, frames: int = 16, size: int = 64, fps: float = 8, seed: int = 0,
                split: str = "train", motion_seed: int | None = None,
                canonical: bool = False) -> tuple[np.ndarray, dict]:
    """``(frames (F, size, size, 3) uint8, meta)``; meta holds the keypoints and every drawn parameter.

    ``seed`` picks the person and scene; ``motion_seed`` (default: ``seed``) picks how they move, so one
    person can perform many variations of an action. ``canonical``: the person faces image right (side
    view) and leads with the right limbs, so the action can go only one way (at 64 px a face is two pixels
    wide: which way someone faces is hard to see, and a motion that may go either way blurs into both).
    """
    act = get_action(action)
    check_split(split)
    _check(frames, size, fps, seed)
    base = [seed, SPLITS.index(split)]
    look = sample_appearance(np.random.default_rng(base + [1]), split)
    body = sample_body(np.random.default_rng(base + [2]))
    moves = base if motion_seed is None else [motion_seed, SPLITS.index(split)]
    motion = sample_motion(np.random.default_rng(moves + [3, zlib.crc32(action.encode())]), act)
    if canonical:
        motion = replace(motion, active="right", facing=1 if act.view == "side" else 0)
    ss = 4 if size <= 128 else 2
    big = size * ss
    painter = PersonPainter(body, look)
    scene = background(look, body, big, big)
    video = np.empty((frames, size, size, 3), np.uint8)  # (F, H, W, 3)
    phases, keypoints = [], []
    for i in range(frames):
        p = (motion.phase0 + i / (fps * motion.period)) % 1.0
        sk = pose_skeleton(act(p, motion), motion, act.view, body, big, big)
        image = scene.copy()
        draw_shadow(image, body.anchor_x * big, body.ground_y * big, sk.scale, sk.lift)
        painter.draw(ImageDraw.Draw(image), sk)
        video[i] = np.asarray(image.resize((size, size), Image.Resampling.LANCZOS))
        phases.append(round(p, 5))
        keypoints.append(sk.keypoints(divide=ss))
    meta = {
        "action": action, "prompt": act.prompt, "seed": seed, "motion_seed": seed if motion_seed is None else motion_seed,
        "split": split, "canonical": canonical, "fps": fps, "size": size,
        "frames": frames, "view": act.view, "ground_y": round(body.ground_y * size, 3),
        "appearance": look.to_dict(), "body": body.to_dict(), "motion": motion.to_dict(),
        "joints": list(JOINTS), "phase": phases, "keypoints": keypoints,  # keypoints: (F, J, 2) x, y
    }
    return video, meta


def motion_mask(meta: dict, pad: int = 3) -> np.ndarray:
    """``(size, size)`` bool: the box the clip's keypoints sweep over all frames, grown by ``pad`` pixels."""
    size, keypoints = meta["size"], np.asarray(meta["keypoints"])  # keypoints (F, J, 2) x, y
    (x0, y0), (x1, y1) = keypoints.min(axis=(0, 1)).astype(int) - pad, keypoints.max(axis=(0, 1)).astype(int) + pad + 1
    mask = np.zeros((size, size), bool)
    mask[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
    return mask


def meta_json(meta: dict) -> str:
    """One top-level key per line, so the file stays readable with the per-frame keypoints inline."""
    return "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in meta.items()) + "\n}\n"


def clip_name(action: str, split: str, seed: int) -> str:
    return f"{action}_{split}_{seed:05d}"


def write_clips(action: str, n: int, out_dir: Path | str, *, frames: int = 16, size: int = 64, fps: float = 8,
                seed: int = 0, split: str = "train", reference_only: bool = False, people: int | None = None,
                canonical: bool = False, reporter: Reporter | None = None) -> list[Path]:
    """Write ``n`` clips (clip i uses seed ``seed + i``) as ``<name>.mp4`` with ``<name>.json`` beside it.

    ``people``: only that many people (clip i shows person ``seed + i % people``, each in their own scene)
    doing ``n`` different variations of the action (motion seed ``seed + i``): an appearance-poor set,
    like a few athletes filmed in one gym. ``canonical``: see :func:`render_clip`.
    With ``reference_only`` only each clip's first frame is written, as ``<name>.png``. Returns the
    mp4 (or png) paths. Every setting is checked before anything is written; each file is written
    atomically, so an interrupted run leaves whole files only.
    """
    from flashctl.files import atomic_path
    from flashctl.video import write_mp4

    get_action(action)
    check_split(split)
    _check(frames, size, fps, seed)
    if n < 1:
        raise SynthSettingError(f"clip count {n} is out of range", hint="ask for at least one clip (--clips N)")
    if people is not None and people < 1:
        raise SynthSettingError(f"people={people} is out of range", hint="ask for at least one person (--people N)")
    out_dir = Path(out_dir)
    reporter = reporter or NullReporter()
    reporter.start(f"synth {action}", total=n)
    written: list[Path] = []
    for i in range(n):
        name = clip_name(action, split, seed + i)
        person = seed + i if people is None else seed + i % people
        video, meta = render_clip(action, frames=1 if reference_only else frames, size=size, fps=fps,
                                  seed=person, split=split, motion_seed=seed + i, canonical=canonical)
        if reference_only:
            with atomic_path(out_dir / f"{name}.png") as tmp:
                Image.fromarray(video[0]).save(tmp, format="PNG")
            written.append(out_dir / f"{name}.png")
        else:
            written.append(write_mp4(out_dir / f"{name}.mp4", video, fps))
            with atomic_path(out_dir / f"{name}.json") as tmp:
                tmp.write_text(meta_json(meta))
        reporter.advance()
    reporter.finish()
    return written
