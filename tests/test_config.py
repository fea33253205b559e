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


# -- discovery: --config, then FLASHCTL_CONFIG, then the nearest flashctl.toml up, then the user's, then defaults --

def test_discovery_walks_up_from_a_subfolder(tmp_path, monkeypatch):
    write(tmp_path, "[train]\nsteps = 11\n")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    config = load_config()
    assert config.train.steps == 11 and config.found_by == "project"
    assert config.library_path() == tmp_path / "motions"  # relative to the file found, not the current folder


def test_nearest_config_wins_over_one_further_up(tmp_path, monkeypatch):
    write(tmp_path, "[train]\nsteps = 11\n")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "[train]\nsteps = 12\n")
    monkeypatch.chdir(tmp_path / "sub")
    assert load_config().train.steps == 12


def test_env_beats_the_walk_and_config_flag_beats_env(tmp_path, monkeypatch):
    write(tmp_path, "[train]\nsteps = 11\n")
    (tmp_path / "elsewhere").mkdir()
    env = write(tmp_path / "elsewhere", "[train]\nsteps = 21\n")
    monkeypatch.setenv("FLASHCTL_CONFIG", str(env))
    config = load_config()
    assert config.train.steps == 21 and config.found_by == "FLASHCTL_CONFIG"
    (tmp_path / "flag").mkdir()
    assert load_config(write(tmp_path / "flag", "[train]\nsteps = 31\n")).train.steps == 31


def test_user_config_when_no_project_config_then_defaults(tmp_path, monkeypatch):
    from flashctl.config_discovery import user_config_path

    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert load_config().found_by == "defaults"
    user = user_config_path()
    assert user == tmp_path / "xdg" / "flashctl" / "flashctl.toml"
    user.parent.mkdir(parents=True)
    user.write_text("[train]\nsteps = 41\n")
    config = load_config()
    assert config.train.steps == 41 and config.found_by == "user"
    write(tmp_path / "work", "[train]\nsteps = 5\n")
    assert load_config().train.steps == 5  # a project config beats the user's


def test_user_config_falls_back_to_dot_config(tmp_path, monkeypatch):
    from flashctl.config_discovery import user_config_path

    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_config_path() == tmp_path / "home" / ".config" / "flashctl" / "flashctl.toml"


def test_bad_env_config_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("FLASHCTL_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError) as info:
        load_config()
    assert "missing.toml (from $FLASHCTL_CONFIG) not found" in info.value.message
    assert "unset FLASHCTL_CONFIG" in info.value.hint


def test_value_sources_name_file_default_and_set(tmp_path):
    from flashctl.config import value_sources

    path = write(tmp_path, "[train]\nsteps = 7\n[options.backbone.animatediff]\npreset = \"tiny\"\n")
    config = load_config(path, ["animate.steps=3"])
    sources = value_sources(config, ["animate.steps=3"])
    assert sources["train.steps"] == str(path.resolve())
    assert sources["options.backbone.animatediff.preset"] == str(path.resolve())
    assert sources["animate.steps"] == "--set"
    assert sources["train.lr"] == "default"


def test_to_toml_round_trips_every_value(tmp_path):
    import tomllib

    from flashctl.config import config_to_dict
    from flashctl.toml_writer import to_toml

    path = write(tmp_path, '[animate]\nnegative_prompt = "a \\"quoted\\" \\\\ thing"\n'
                           '[options.backbone.animatediff]\npreset = "tiny"\n')
    data = config_to_dict(load_config(path))
    parsed = tomllib.loads(to_toml(data))
    mam = {k: v for k, v in data["train"]["mam"].items() if v is not None}  # TOML has no null: None is left out
    assert parsed == data | {"train": data["train"] | {"mam": mam}}
    assert parsed["animate"]["negative_prompt"] == 'a "quoted" \\ thing'
