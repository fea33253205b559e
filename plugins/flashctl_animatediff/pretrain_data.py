"""What pretraining (:mod:`.pretrain`) reads and shows: clips drawn by ``(seed, step)``, held-out clips, sample sheets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flashctl.progress import Reporter

from .pretrain_loop import log

if TYPE_CHECKING:
    from .pretrain import PretrainSettings

SAMPLES = "samples"


@dataclass(frozen=True)
class ClipSource:
    """Training data: a prompt per action and ``render(action, seed, split) -> (F, H, W, 3) uint8``."""

    prompts: dict[str, str]
    render: Callable[[str, int, str], np.ndarray]


class Pool:
    """Clips drawn by ``(seed, step)``: ``count`` train seeds per action, kept after the first render.

    With ``workers`` > 1 every clip is rendered up front in that many spawned processes (``source.render`` must
    then pickle: a partial of module-level functions, not a lambda); else each one as a step first draws it.
    """

    def __init__(self, source: ClipSource, actions: tuple[str, ...], count: int,
                 keep: Callable[[np.ndarray], Any], workers: int = 0) -> None:
        self.source, self.actions, self.count, self.keep = source, actions, count, keep
        self._cache: dict[tuple[str, int], Any] = {}
        if workers > 1:
            self._render_all(workers)

    def _render_all(self, workers: int) -> None:
        import multiprocessing

        keys = [(action, i) for action in self.actions for i in range(self.count)]
        with multiprocessing.get_context("spawn").Pool(workers) as processes:  # no fork of a CUDA process
            clips = processes.starmap(self.source.render, [(a, i, "train") for a, i in keys], chunksize=8)
        for key, frames in zip(keys, clips):  # (F, H, W, 3) uint8 each
            self._cache[key] = self.keep(frames)

    def draw(self, seed: int, step: int, n: int) -> list[tuple[str, Any]]:
        rng = np.random.default_rng([seed, step])
        picks = [(self.actions[int(rng.integers(len(self.actions)))], int(rng.integers(self.count))) for _ in range(n)]
        for key in picks:
            if key not in self._cache:
                self._cache[key] = self.keep(self.source.render(key[0], key[1], "train"))
        return [(action, self._cache[(action, s)]) for action, s in picks]


def frame_drawer(s: PretrainSettings, source: ClipSource) -> Callable[[int], np.ndarray]:
    """``step -> (4 * batch, H, W, 3)`` uint8: one random frame from each of the ``4 * batch`` clips drawn then."""
    pool = Pool(source, s.actions, s.clips_per_action, keep=lambda frames: frames, workers=s.render_workers)
    per_clip = 4

    def draw(step: int) -> np.ndarray:
        rng = np.random.default_rng([s.seed, step, 1])
        return np.stack([clip[rng.integers(len(clip))] for _, clip in pool.draw(s.seed, step, per_clip * s.batch)])

    return draw


def heldout(s: PretrainSettings, source: ClipSource, count: int, split: str = "heldout") -> Any:
    """``count`` clips of the actions in turn, seeds 0.. of ``split``: ``(count, F, 3, H, W)`` in [-1, 1]."""
    import torch

    from flashctl.video import frames_to_tensor

    actions = s.actions
    return torch.stack([frames_to_tensor(source.render(actions[i % len(actions)], i, split)) for i in range(count)])


def sheet(path: Path, real: Any, made: Any) -> None:
    """Rows alternate real clip / model output, one frame per column, as a PNG."""
    import torch
    from PIL import Image

    from flashctl.video import contact_sheet, tensor_to_frames

    rows = torch.stack([real, made], dim=1).flatten(0, 2)  # (2*n*F, 3, H, W): clip 0 real, clip 0 made, ...
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(contact_sheet(tensor_to_frames(rows), columns=real.shape[1])).save(path)


def reconstructions(s: PretrainSettings, source: ClipSource, backbone: Any, name: str,
                    reporter: Reporter) -> Callable[[int], None]:
    """A ``show(step)``: held-out clips and their VAE round trips to ``samples/<name>-step-N.png``, L1 to the log."""
    def show(step: int) -> None:
        import torch

        clips = heldout(s, source, count=s.samples)  # (n, F, 3, H, W)
        with torch.no_grad():
            rec = backbone.decode_latents(backbone.encode_video(clips.to(backbone.device))).cpu()  # (n, F, 3, H, W)
        sheet(Path(s.out) / SAMPLES / f"{name}-step-{step}.png", clips, rec)
        l1 = float((rec - clips).abs().mean())
        log(s, f"{name} step {step} held-out L1 {l1:.4f}")
        reporter.note(f"{name} step {step}: held-out reconstruction L1 {l1:.4f} (pixels in [-1, 1])")

    return show
