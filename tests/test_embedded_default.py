"""The built-in defaults are the embedded default: a fresh install animates a shipped motion from any folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cli_kit import run
from flashctl.config import SHIPPED_LIBRARY, FlashConfig, config_to_dict, load_config

REPO = Path(__file__).resolve().parents[1]


def test_builtin_defaults_are_the_project_toml():
    assert config_to_dict(FlashConfig()) == config_to_dict(load_config(REPO / "flashctl.toml"))


def test_a_written_component_table_replaces_only_that_components_builtin_one():
    config = FlashConfig.model_validate({"options": {"decoder": {"detail-enhance": {"train_steps": 3}}}})
    assert config.component_options("backbone", "animatediff") == {"preset": "tiny", "base": "shipped",
                                                                   "lora_feed_forward": True}
    assert config.component_options("decoder", "detail-enhance") == {"train_steps": 3}
    random_base = FlashConfig.model_validate({"options": {"backbone": {"animatediff": {"preset": "tiny"}}}})
    assert random_base.component_options("backbone", "animatediff") == {"preset": "tiny"}  # no base: random weights


def test_the_shipped_library_is_a_fallback_only_when_no_config_sets_the_library(tmp_path):
    assert FlashConfig().fallback_library() == SHIPPED_LIBRARY.resolve()  # cwd is an empty temp folder
    assert FlashConfig.model_validate({"library": {"path": "motions"}}).fallback_library() is None
    assert load_config(REPO / "flashctl.toml").fallback_library() is None  # it is the project library there


def test_fresh_install_animates_a_shipped_motion_from_an_empty_folder(tmp_path, monkeypatch, capsys):
    """No flashctl.toml anywhere, no user config, no FLASHCTL_CONFIG (conftest): the built-in defaults only."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("FLASHCTL_PROGRESS_SECONDS", "0")  # stderr is not a terminal: a plain line per step
    work = tmp_path / "somewhere"
    work.mkdir()
    monkeypatch.chdir(work)
    Image.fromarray(np.asarray(Image.open(REPO / "examples" / "actor.png").convert("RGB"))).save(work / "photo.png")
    assert "source: <defaults>" in run(capsys, "config", "show").err
    r = run(capsys, "animate", "-a", "bow", "-i", "photo.png", "--set", "animate.steps=2")
    assert r.code == 0, r.err
    assert r.out.splitlines() == [str(work / "outputs" / "photo.mp4")]
    assert (work / "outputs" / "photo.mp4").stat().st_size > 0
    assert "shipped demo motion" in r.err and str(SHIPPED_LIBRARY.resolve()) in r.err
    steps = [line.split("  ")[0] for line in r.err.splitlines() if line.startswith("animate (denoising steps)")]
    assert steps[:2] == ["animate (denoising steps): 1/2 (50%)", "animate (denoising steps): 2/2 (100%)"], r.err
    assert not (work / "motions").exists()  # nothing was written into a library
