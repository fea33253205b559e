"""The CLI contract: exit codes, one-line errors without tracebacks, JSON on stdout, help."""

from __future__ import annotations

import json

import pytest

from cli_kit import run


def no_traceback(r) -> bool:
    return "Traceback" not in r.out + r.err


def test_help_lists_every_command(capsys):
    r = run(capsys, "--help")
    assert r.code == 0
    for cmd in ("prepare", "train", "animate", "eval", "motions", "plugins", "config", "doctor", "synth"):
        assert cmd in r.out


def test_no_arguments_shows_usage_with_usage_exit_code(capsys):
    r = run(capsys)
    assert r.code == 2 and "Usage" in r.out + r.err


def test_unknown_command_is_a_usage_error(capsys):
    r = run(capsys, "trian")
    assert r.code == 2 and "trian" in r.err and no_traceback(r)


def test_plugins_json_lists_builtins_and_no_failures(capsys):
    r = run(capsys, "plugins", "--json")
    data = json.loads(r.out)
    assert r.code == 0 and data["failures"] == []
    kinds = {c["kind"] for c in data["components"]}
    assert {"backbone", "decoder", "augmentation", "metric", "video_format"} <= kinds


def test_plugins_shows_a_broken_plugin_without_crashing(tmp_path, capsys):
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom at import')\n")
    (tmp_path / "flashctl.toml").write_text('[plugins]\npaths = ["broken.py"]\n')
    r = run(capsys, "plugins")
    assert r.code == 0 and "boom at import" in r.out
    d = run(capsys, "doctor", "--json")
    assert d.code == 1
    plugin_check = next(c for c in json.loads(d.out) if c["check"] == "plugins")
    assert not plugin_check["ok"] and "boom at import" in plugin_check["detail"]


def test_config_show_json_applies_overrides(capsys):
    r = run(capsys, "config", "show", "--json", "--set", "train.steps=7")
    assert r.code == 0 and json.loads(r.out)["train"]["steps"] == 7


def test_config_validate_reports_bad_key_with_exit_2(tmp_path, capsys):
    (tmp_path / "flashctl.toml").write_text("[animate]\nstepss = 3\n")
    r = run(capsys, "config", "validate")
    assert r.code == 2 and "animate.stepss" in r.err and "steps" in r.err and no_traceback(r)


def test_malformed_toml_exit_2_with_line_and_column(tmp_path, capsys):
    (tmp_path / "flashctl.toml").write_text("[train\nsteps = 3\n")
    r = run(capsys, "config", "show")
    assert r.code == 2 and "flashctl.toml:1:" in r.err and no_traceback(r)


def test_unknown_component_exit_2(tmp_path, capsys):
    r = run(capsys, "config", "validate", "--set", "model.decoder=vea")
    assert r.code == 2 and "'vea'" in r.err and "vae" in r.err


def test_explicit_missing_config_file(tmp_path, capsys):
    r = run(capsys, "--config", tmp_path / "nope.toml", "config", "show")
    assert r.code == 2 and "nope.toml" in r.err and no_traceback(r)


def test_debug_shows_the_traceback(tmp_path, capsys):
    (tmp_path / "flashctl.toml").write_text("[train\n")
    with pytest.raises(Exception) as info:
        run(capsys, "--debug", "config", "show")
    assert "malformed TOML" in str(info.value)


def test_doctor_json_reports_versions_and_ffmpeg(capsys):
    r = run(capsys, "doctor", "--json")
    checks = {c["check"]: c for c in json.loads(r.out)}
    assert checks["torch device"]["ok"] and "2.13.0" in checks["torch device"]["detail"]
    assert checks["ffmpeg"]["ok"] and checks["torchvision"]["ok"]


@pytest.mark.parametrize("argv", [["--help"], ["plugins", "--json"], ["config", "show"], ["motions", "list"]])
def test_fast_paths_never_import_torch(argv):
    import subprocess
    import sys

    code = ("import sys\nfrom flashctl.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'\nassert 'diffusers' not in sys.modules\n" % argv)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-500:]
