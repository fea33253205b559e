"""The GPU-machine kit (scripts/device/, docs/device.md) stays runnable without a GPU to check it on:
the run call fits the device tool, the script names only flags and motions pretraining accepts, and
every carried wheel is pinned."""

import contextlib
import io
import json
import re

from script_kit import REPO, loaded_script

KIT = REPO / "scripts" / "device" / "pretrain_base.sh"


def _run_call() -> dict:
    """The device ``run`` call docs/device.md gives (its first ```json block)."""
    text = (REPO / "docs" / "device.md").read_text()
    return json.loads(re.search(r"```json\n(.*?)\n```", text, re.S).group(1))


def test_the_documented_run_call_fits_the_device_tool():
    call = _run_call()
    assert len(call["command"]) < 2000
    assert call["carry"] == [".whl"] and call["timeout_s"] <= 600
    assert "scripts/device/pretrain_base.sh" in call["command"] and KIT.is_file()


def test_the_kit_passes_only_flags_pretrain_base_accepts():
    text = KIT.read_text()
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", text[text.index("stages=("):text.index('stamp "pretraining done"')]))
    assert {"--appearance", "--unet-minutes", "--vae-minutes", "--device"} <= flags
    help_text = io.StringIO()
    with loaded_script("scripts/pretrain_base.py") as script, contextlib.redirect_stdout(help_text):
        try:
            script.parse(["--help"])
        except SystemExit:
            pass
    accepted = set(re.findall(r"--[a-z][a-z-]+", help_text.getvalue()))
    assert flags <= accepted, f"not accepted by scripts/pretrain_base.py: {sorted(flags - accepted)}"


def test_the_kit_actions_are_motions_of_the_synthetic_world():
    from flashctl_synth.actions import ACTIONS, PRIOR_MOTIONS

    default = re.search(r"ACTIONS=\$\{ACTIONS:-([\w,]+)\}", KIT.read_text()).group(1).split(",")
    assert {"wander_side", "wander_front"} <= set(default)
    assert set(default) <= set(ACTIONS) | set(PRIOR_MOTIONS)


def test_every_carried_wheel_is_pinned_and_none_is_torch():
    wheels = (REPO / "scripts" / "device" / "wheels.sh").read_text()
    names = re.search(r"PACKAGES=\(([^)]*)\)", wheels).group(1).split()
    pins = {re.sub(r"[-_.]+", "-", line.split("==")[0]).lower()
            for line in (REPO / "constraints.txt").read_text().splitlines() if "==" in line}
    normal = [re.sub(r"[-_.]+", "-", n).lower() for n in names]
    assert {"diffusers", "pydantic", "pydantic-core"} <= set(normal)
    assert set(normal) <= pins, f"not pinned in constraints.txt: {sorted(set(normal) - pins)}"
    assert not {"torch", "torchvision"} & set(normal)
