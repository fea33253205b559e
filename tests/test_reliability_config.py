"""Reliability: bad config files, numeric nonsense and broken plugins end in one line with a fix."""

from __future__ import annotations

import json

import pytest

from cli_kit import run
from flashctl.config import load_config
from flashctl.errors import ConfigError


def _one_line_error(result, *needles: str) -> None:
    """Exit 2, no traceback, an error line naming every needle and a hint line."""
    assert result.code == 2, result
    assert "Traceback" not in result.err and "internal error" not in result.err
    lines = result.err.strip().splitlines()
    assert lines[0].startswith("error:") and lines[1].startswith("hint:"), result.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize("toml, key, value", [
    ("[train]\nlr = inf\n", "train.lr", "inf"),
    ("[train]\nlr = nan\n", "train.lr", "nan"),
    ("[train]\nlr = -inf\n", "train.lr", "-inf"),
    ("[train]\nlr = 1000.0\n", "train.lr", "1000.0"),
    ("[train.mam]\nlambda_motion = inf\n", "train.mam.lambda_motion", "inf"),
    ("[prepare]\nstart = nan\n", "prepare.start", "nan"),
    ("[animate]\nguidance_scale = inf\n", "animate.guidance_scale", "inf"),
    ("[train]\nstrong_augment = true\n[options.augmentation.color-jitter]\nbrightness = nan\n",
     "color-jitter.brightness", "nan"),
])
def test_numeric_nonsense_is_a_config_error_naming_key_and_value(tmp_path, capsys, toml, key, value):
    path = tmp_path / "flashctl.toml"
    path.write_text(toml)
    result = run(capsys, "--config", path, "config", "validate")
    _one_line_error(result, str(path), key, value)


def test_non_finite_override_is_refused(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(None, ["train.lr=inf"])
    assert info.value.message.startswith("--set: train.lr") and "inf" in info.value.message


def test_config_path_that_is_a_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FLASHCTL_CONFIG", str(tmp_path))
    _one_line_error(run(capsys, "config", "validate"), str(tmp_path), "is a folder")


def test_config_file_that_is_not_utf8(tmp_path, capsys):
    path = tmp_path / "flashctl.toml"
    path.write_bytes(b"[train]\nsteps = 3 # caf\xe9\n")
    result = run(capsys, "--config", path, "config", "validate")
    _one_line_error(result, str(path), "not UTF-8", "0xe9")
    assert "UTF-8" in result.err.splitlines()[1]


def test_unreadable_config_file(tmp_path, monkeypatch):
    path = tmp_path / "flashctl.toml"
    path.write_text("[train]\n")

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(type(path), "open", denied)
    with pytest.raises(ConfigError, match="cannot be read \\(Permission denied\\)") as info:
        load_config(path)
    assert "permissions" in info.value.hint


@pytest.mark.parametrize("body", ["import sys\nsys.exit(3)\n", "raise RuntimeError('boom at import')\n",
                                  "from flashctl import hookimpl\nimport sys\n\n@hookimpl\n"
                                  "def register_metrics(register):\n    sys.exit('bye')\n"])
def test_a_plugin_that_exits_or_raises_is_listed_as_failed_and_the_rest_work(tmp_path, capsys, body):
    (tmp_path / "plugs").mkdir()
    (tmp_path / "plugs" / "evil.py").write_text(body)
    (tmp_path / "flashctl.toml").write_text('[plugins]\npaths = ["plugs"]\n')
    result = run(capsys, "plugins", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert [f["name"] for f in data["failures"]] == ["local:evil"]
    assert "animatediff" in {p["name"] for p in data["plugins"]}
    doctor = run(capsys, "doctor")
    assert "local:evil" in doctor.out + doctor.err and "Traceback" not in doctor.err
