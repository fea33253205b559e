"""flashctl built-in plugin: synthetic human actors doing known actions (the `flashctl synth` command).

The world lives in sibling modules (numpy + PIL, imported only when the command runs):
:mod:`.world` (bodies and the appearance pools), :mod:`.actions` (joint-angle trajectories),
:mod:`.skeleton` (forward kinematics), :mod:`.figure` and :mod:`.scenes` (drawing), and
:mod:`.render` (``render_clip``, ``write_clips``).

It also registers the ``keypoints`` metric: a small keypoint estimator trained on the world
(:mod:`.keypoint_net`, shipped weights in ``weights/``) scores generated frames against the real
continuation (:mod:`.keypoint_metric`, which also has ``recognise`` for action recognition).
"""

from __future__ import annotations

from typing import Any, Callable

from flashctl import hookimpl


@hookimpl
def register_commands(app: Any) -> None:
    from .command import synth

    app.command("synth")(synth)


def _keypoints(options: Any, ctx: Any) -> Callable:
    from .keypoint_metric import keypoint_error
    from .keypoint_net import load_keypoint_net

    load_keypoint_net()  # a missing weights file fails when the metric is built, not mid-evaluation
    return keypoint_error


@hookimpl
def register_metrics(register: Any) -> None:
    register("keypoints", _keypoints, higher_is_better={"correlation": True, "gain": "near 1", "error": False}, requires_target=True,
             summary="joint moves (synthetic-world keypoint net) vs the real continuation: correlation, gain, error")
