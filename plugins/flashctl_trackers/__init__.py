"""flashctl built-in plugin: experiment trackers for ``train`` (all off by default).

``tensorboard`` (the optional ``flashctl[tensorboard]`` extra), ``wandb`` (when the ``wandb`` package is
installed; offline unless ``WANDB_MODE`` or ``[options.tracker.wandb] mode`` says otherwise) and ``jsonl``
(no dependency: one JSON line per log call, what the tests read). Registration imports none of them;
the code lives in :mod:`.writers`. What ``train`` logs: :mod:`flashctl.trackers`.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from flashctl import hookimpl
from flashctl.registry import NoOptions, Options


class WandbOptions(Options):
    project: str = Field("flashctl", description="the W&B project runs are logged to")
    entity: Optional[str] = Field(None, description="the W&B entity (user or team); default: yours")
    mode: Optional[Literal["offline", "online", "disabled"]] = Field(
        None, description="W&B mode; default: $WANDB_MODE if set, else offline (`wandb sync` uploads later)")


def _lazy(name: str):
    """The factory ``writers.<name>``, imported when a tracker is built (registration stays import-light)."""
    def factory(*args, **kwargs):
        from . import writers

        return getattr(writers, name)(*args, **kwargs)
    return factory


@hookimpl
def register_trackers(register):
    register("tensorboard", _lazy("tensorboard"), options=NoOptions, requires=("tensorboard",),
             install="pip install 'flashctl[tensorboard]'",
             summary="TensorBoard event files in the run's folder (tensorboard --logdir FOLDER)")
    register("wandb", _lazy("wandb"), options=WandbOptions, requires=("wandb",), install="pip install wandb",
             summary="Weights & Biases, offline by default (WANDB_MODE=online to upload)")
    register("jsonl", _lazy("jsonl"), options=NoOptions,
             summary="metrics.jsonl in the run's folder: one JSON line per log call, videos as GIFs")
