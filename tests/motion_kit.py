"""A tiny motion library for train/animate tests: synthetic prepared clips, a small config."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from flashctl.config import FlashConfig
from flashctl.library import MotionLibrary
from flashctl.manifest import ClipEntry, MotionManifest

FRAMES, SIZE, FPS = 4, 32, 8.0


def tiny_config(root: Path, train: dict | None = None, animate: dict | None = None,
                options: dict | None = None, model: dict | None = None) -> FlashConfig:
    """Config for the tiny backbone on 4 frames of 32 px, with the library in ``root/motions``."""
    return FlashConfig.model_validate({
        "source": str(root / "flashctl.toml"),
        "model": model or {},
        "prepare": {"frames": FRAMES, "size": SIZE, "fps": FPS},
        "train": {"steps": 2, "lr": 3e-3, "strong_augment": False, "detail_decoder": False, **(train or {})},
        "animate": {"steps": 2, "formats": ["gif"], **(animate or {})},
        "options": {"backbone": {"animatediff": {}}, **(options or {})},  # random weights, not the shipped base
    })


def synthetic_clips(n: int = 2, seed: int = 0) -> np.ndarray:
    """(N, F, S, S, 3) uint8: a bright square sliding right over a per-clip background colour."""
    rng = np.random.default_rng(seed)
    clips = np.zeros((n, FRAMES, SIZE, SIZE, 3), np.uint8)
    for i in range(n):
        clips[i] = rng.integers(0, 120, 3)
        for f in range(FRAMES):
            x = 4 + 5 * f
            clips[i, f, 10:20, x:x + 8] = 230
    return clips


def make_action(config: FlashConfig, action: str = "slide", n: int = 2) -> MotionLibrary:
    """An action as ``prepare`` leaves it: motion.toml, clips/ (placeholder bytes) and the frame cache."""
    library = MotionLibrary(config.library_path())
    entries = []
    for i in range(n):
        data = f"clip {i}".encode()  # stands in for the source video; only its hash is checked
        entries.append(ClipEntry(file=f"clips/c{i}.mp4", sha256=hashlib.sha256(data).hexdigest()))
        path = library.path(action) / entries[-1].file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    library.write_manifest(action, MotionManifest(name=action, prompt="a square slides right", clips=entries))
    library.save_frames(action, synthetic_clips(n), {"frames": FRAMES, "fps": FPS, "size": SIZE, "start": 0.0})
    return library
