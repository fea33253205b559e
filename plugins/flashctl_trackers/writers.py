"""The trackers' code: each factory is ``(options, ctx, run) -> tracker`` (see ``register_trackers``)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import numpy as np

from flashctl.trackers import TrackerRun, gif_bytes


class JsonlTracker:
    """``run.dir/metrics.jsonl``: ``{"step", "time", "scalars"}`` or ``{"step", "time", "video"}`` per call;
    a video's frames go to ``run.dir/TAG-STEP.gif``. Each line is flushed as it is written."""

    def __init__(self, run: TrackerRun) -> None:
        self.dir = run.dir
        self.file = open(run.dir / "metrics.jsonl", "a", encoding="utf-8")

    def _line(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps({**record, "time": round(time.time(), 3)}) + "\n")
        self.file.flush()

    def log(self, step: int, scalars: dict[str, float]) -> None:
        self._line({"step": step, "scalars": scalars})

    def log_video(self, step: int, tag: str, frames: np.ndarray, fps: float) -> None:
        name = f"{tag.replace('/', '_')}-{step:06d}.gif"
        (self.dir / name).write_bytes(gif_bytes(frames, fps))
        f, h, w = frames.shape[:3]
        self._line({"step": step, "video": {"tag": tag, "file": name, "frames": f, "height": h, "width": w,
                                            "fps": fps}})

    def finish(self) -> None:
        self.file.close()


def jsonl(options: Any, ctx: Any, run: TrackerRun) -> JsonlTracker:
    return JsonlTracker(run)


class TensorBoardTracker:
    """Event files in ``run.dir``. Videos are animated-GIF image summaries, what ``SummaryWriter.add_video``
    writes, encoded here with Pillow so that moviepy is not needed."""

    def __init__(self, run: TrackerRun) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run.dir))
        self.writer.add_text("run", f"action `{run.action}`, run `{run.run_id}`, {run.total_steps} steps\n\n"
                             "```json\n" + json.dumps(run.config, indent=1, default=str) + "\n```", 0)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)

    def log_video(self, step: int, tag: str, frames: np.ndarray, fps: float) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        f, h, w, c = frames.shape
        image = Summary.Image(height=h, width=w, colorspace=c, encoded_image_string=gif_bytes(frames, fps))
        self.writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
        self.writer.flush()

    def finish(self) -> None:
        self.writer.close()


def tensorboard(options: Any, ctx: Any, run: TrackerRun) -> TensorBoardTracker:
    return TensorBoardTracker(run)


class WandbTracker:
    """One W&B run named after the run id, grouped by action; offline unless told otherwise."""

    def __init__(self, options: Any, run: TrackerRun) -> None:
        import wandb

        self.wandb, self.dir = wandb, run.dir
        mode = options.mode or os.environ.get("WANDB_MODE") or "offline"
        self.run = wandb.init(project=options.project, entity=options.entity, name=run.run_id, group=run.action,
                              dir=str(run.dir), config=run.config, mode=mode)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        self.run.log(scalars, step=step)

    def log_video(self, step: int, tag: str, frames: np.ndarray, fps: float) -> None:
        path = self.dir / f"{tag.replace('/', '_')}-{step:06d}.gif"  # from a file: wandb needs no moviepy
        path.write_bytes(gif_bytes(frames, fps))
        self.run.log({tag: self.wandb.Video(str(path))}, step=step)

    def finish(self) -> None:
        self.run.finish()


def wandb(options: Any, ctx: Any, run: TrackerRun) -> WandbTracker:
    return WandbTracker(options, run)
