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


def test_config_show_prints_valid_toml_and_sources(tmp_path, capsys, monkeypatch):
    import tomllib

    (tmp_path / "flashctl.toml").write_text("[train]\nsteps = 9\n")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")  # found by walking up
    r = run(capsys, "config", "show")
    assert r.code == 0, r.err
    data = tomllib.loads(r.out)
    assert data["train"]["steps"] == 9 and data["train"]["lr"] > 0
    assert str(tmp_path / "flashctl.toml") in r.err
    r = run(capsys, "config", "show", "--sources", "--set", "animate.steps=4")
    data = tomllib.loads(r.out)
    assert data["animate"]["steps"] == 4
    assert f"steps = 9  # {tmp_path / 'flashctl.toml'}" in r.out
    assert "steps = 4  # --set" in r.out and "lr = 0.002  # default" in r.out


def test_flashctl_config_env_beats_the_walk(tmp_path, capsys, monkeypatch):
    (tmp_path / "flashctl.toml").write_text("[train]\nsteps = 9\n")
    other = tmp_path / "other.toml"
    other.write_text("[train]\nsteps = 19\n")
    monkeypatch.setenv("FLASHCTL_CONFIG", str(other))
    r = run(capsys, "config", "show", "--json")
    assert r.code == 0 and json.loads(r.out)["train"]["steps"] == 19
    r = run(capsys, "--config", tmp_path / "flashctl.toml", "config", "show", "--json")
    assert json.loads(r.out)["train"]["steps"] == 9


def _plain_reporter(every: float):
    import io

    from rich.console import Console

    from flashctl.cli.console import RichReporter

    buffer = io.StringIO()
    now = [100.0]
    reporter = RichReporter(Console(file=buffer, width=200), every=every, clock=lambda: now[0])
    return reporter, buffer, now


def test_non_tty_progress_prints_plain_lines_with_rate_eta_and_loss():
    reporter, buffer, now = _plain_reporter(every=5)
    assert reporter.plain  # a StringIO is not a terminal
    reporter.start("train", total=10)
    for step in range(10):
        now[0] += 2.0  # 2 s per step
        reporter.advance(1, loss=1.0 / (step + 1))
    reporter.finish()
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 4, lines  # at 6, 12 and 18 s, then the done line
    assert lines[0].startswith("train: 3/10 (30%)") and "2.00 s/it" in lines[0] and "eta 14s" in lines[0]
    assert "loss=0.3333" in lines[0]
    assert lines[-1].startswith("train: 10/10 (100%)") and "done in 20s" in lines[-1] and "loss=0.1" in lines[-1]


def test_non_tty_progress_is_silent_for_short_tasks():
    reporter, buffer, now = _plain_reporter(every=5)
    reporter.start("animate", total=2)
    now[0] += 1
    reporter.advance(1)
    reporter.finish()
    assert buffer.getvalue() == ""


def test_non_tty_progress_interval_from_the_environment(monkeypatch, capsys):
    from flashctl.cli.console import RichReporter

    monkeypatch.setenv("FLASHCTL_PROGRESS_SECONDS", "0")
    reporter = RichReporter()
    reporter.start("prepare", total=2)
    reporter.advance(1)
    reporter.advance(1)
    reporter.finish()
    err = capsys.readouterr().err.splitlines()
    assert [line.split("  ")[0] for line in err] == ["prepare: 1/2 (50%)", "prepare: 2/2 (100%)", "prepare: 2/2 (100%)"]
