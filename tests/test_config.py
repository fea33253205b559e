"""flashctl.toml parsing, precedence, overrides and the wording of config errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from flashctl.config import FlashConfig, load_config, parse_override, validate_components
from flashctl.errors import ConfigError, UnknownComponentError
from flashctl.plugins import build_host

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flashctl.toml"
    path.write_text(text)
    return path


def test_shipped_config_validates_both_phases():
    config = load_config(REPO / "flashctl.toml")
    parsed = validate_components(config, build_host().registry)
    assert config.model.backbone == "animatediff"
    assert ("backbone", "animatediff") in parsed
    assert parsed[("backbone", "animatediff")].preset == "tiny"


def test_defaults_when_no_file(tmp_path):
    config = load_config()
    assert config == FlashConfig(source=config.source)
    assert config.library_path() == tmp_path / "motions"


def test_precedence_defaults_file_then_overrides(tmp_path):
    path = write(tmp_path, "[train]\nsteps = 7\nlr = 0.5\n")
    config = load_config(path, ["train.steps=50"])
    assert config.train.steps == 50          # --set beats the file
    assert config.train.lr == 0.5            # file beats the default
    assert config.train.batch_size == 1      # default kept


def test_override_values_are_toml_and_bare_words_are_strings():
    assert parse_override("train.steps=50") == (["train", "steps"], 50)
    assert parse_override("animate.formats=['gif','mp4']") == (["animate", "formats"], ["gif", "mp4"])
    assert parse_override("model.backbone=svd") == (["model", "backbone"], "svd")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("train.steps")


def test_config_is_frozen():
    config = load_config()
    with pytest.raises(Exception):
        config.train.steps = 3


def test_unknown_key_names_file_key_and_suggests(tmp_path):
    path = write(tmp_path, "[train]\nstepz = 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in info.value.message and "train.stepz" in info.value.message
    assert "steps" in info.value.hint
    assert info.value.exit_code == 2


def test_unknown_section_suggests(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "[trian]\nsteps = 3\n"))
    assert "trian" in info.value.message and "train" in info.value.hint


def test_bad_value_names_key_and_value(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "[train]\nsteps = \"lots\"\n"))
    assert "train.steps" in info.value.message and "'lots'" in info.value.message


def test_malformed_toml_names_line_and_column(tmp_path):
    path = write(tmp_path, "[train]\nsteps = 3\nlr = = 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"{path}:3:" in info.value.message


def test_unknown_component_suggests_close_match(tmp_path):
    config = load_config(write(tmp_path, "[model]\nbackbone = \"animatedif\"\n"))
    with pytest.raises(UnknownComponentError) as info:
        validate_components(config, build_host().registry)
    assert "model.backbone" in info.value.message and "'animatedif'" in info.value.message
    assert "animatediff" in info.value.hint


def test_component_options_checked_in_phase_two(tmp_path):
    config = load_config(write(tmp_path, "[options.backbone.animatediff]\npreset = \"huge\"\n"))
    with pytest.raises(ConfigError) as info:
        validate_components(config, build_host().registry)
    assert "options.backbone.animatediff.preset" in info.value.message and "'huge'" in info.value.message


def test_options_for_unknown_component_rejected(tmp_path):
    config = load_config(write(tmp_path, "[options.metric.frist-frame]\nx = 1\n"))
    with pytest.raises(UnknownComponentError) as info:
        validate_components(config, build_host().registry)
    assert "first-frame" in info.value.hint


def test_paths_in_a_config_are_relative_to_its_folder(tmp_path):
    (tmp_path / "proj").mkdir()
    path = write(tmp_path / "proj", '[library]\npath = "../shared/motions"\n[animate]\nout = "renders"\n')
    config = load_config(path)
    assert config.library_path() == (tmp_path / "shared" / "motions").resolve()
    assert config.project_path(config.animate.out) == (tmp_path / "proj" / "renders").resolve()
