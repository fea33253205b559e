"""flashctl built-in plugin: synthetic human actors doing known actions (the `flashctl synth` command).

The world lives in sibling modules (numpy + PIL, imported only when the command runs):
:mod:`.world` (bodies and the two appearance pools), :mod:`.actions` (joint-angle trajectories),
:mod:`.skeleton` (forward kinematics), :mod:`.figure` and :mod:`.scenes` (drawing), and
:mod:`.render` (``render_clip``, ``write_clips``).
"""

from __future__ import annotations

from typing import Any

from flashctl import hookimpl


@hookimpl
def register_commands(app: Any) -> None:
    from .command import synth

    app.command("synth")(synth)
