"""Plugin discovery: entry points, failures captured, duplicates, disable list, local files, traits."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from cli_kit import run
from flashctl.config import load_config
from flashctl.directions import NEAR_ONE
from flashctl.errors import ConfigError, DuplicateComponentError
from flashctl.plugins import build_host, host_for
from plugin_kit import install_distribution, plugin_source

BUILTINS = {"videoio", "animatediff", "decoders", "augment", "metrics", "weights", "synth", "svd"}


def test_builtins_come_through_entry_points_only():
    host = build_host()
    assert BUILTINS <= {p.name for p in host.plugins}
    assert all(p.source == "entry point" and p.distribution == "flashctl" for p in host.plugins if p.name in BUILTINS)
    assert host.failures == []


def test_builtins_register_every_kind_they_promise():
    registry = build_host().registry
    for kind in ("backbone", "decoder", "augmentation", "metric", "video_format"):
        assert registry.names(kind), f"no built-in {kind}"
    spec = registry.get("augmentation", "color-jitter")
    assert spec.plugin == "augment" and spec.traits.preserves_motion is True


def test_third_party_distribution_registers_an_augmentation(tmp_path, monkeypatch):
    install_distribution(tmp_path / "site", "flashctl_tint", plugin_source("tint"), monkeypatch=monkeypatch)
    host = build_host()
    spec = host.registry.get("augmentation", "tint")
    assert spec.plugin == "flashctl_tint" and spec.plugin_version == "0.1"
    assert "register_augmentations" in next(p for p in host.plugins if p.name == "flashctl_tint").hooks


def test_broken_plugin_is_reported_and_others_still_load(tmp_path, monkeypatch):
    install_distribution(tmp_path / "site", "flashctl_broken", "import does_not_exist_anywhere\n",
                         monkeypatch=monkeypatch)
    host = build_host()
    assert [f.name for f in host.failures] == ["flashctl_broken"]
    assert "does_not_exist_anywhere" in host.failures[0].error
    assert BUILTINS <= {p.name for p in host.plugins}


def test_duplicate_component_names_both_plugins(tmp_path, monkeypatch):
    install_distribution(tmp_path / "site", "flashctl_dupe", plugin_source("color-jitter"), monkeypatch=monkeypatch)
    with pytest.raises(DuplicateComponentError) as info:
        build_host()
    assert "'augment'" in info.value.message and "'flashctl_dupe'" in info.value.message
    assert "disable" in info.value.hint


def test_disable_list_and_env_var_skip_plugins(tmp_path, monkeypatch):
    install_distribution(tmp_path / "site", "flashctl_dupe", plugin_source("color-jitter"), monkeypatch=monkeypatch)
    host = build_host(disable=["flashctl_dupe"])
    assert host.registry.get("augmentation", "color-jitter").plugin == "augment"
    assert host.disabled == ["flashctl_dupe"]
    monkeypatch.setenv("FLASHCTL_DISABLE_PLUGINS", "augment")
    host = build_host()
    assert host.registry.get("augmentation", "color-jitter").plugin == "flashctl_dupe"


def test_project_local_plugin_files_from_config(tmp_path):
    (tmp_path / "my_plugins").mkdir()
    (tmp_path / "my_plugins" / "tint.py").write_text(plugin_source("tint"))
    (tmp_path / "flashctl.toml").write_text('[plugins]\npaths = ["my_plugins"]\n')
    host = host_for(load_config())
    assert host.registry.get("augmentation", "tint").plugin == "local:tint"


def test_missing_local_plugin_path_is_a_config_error(tmp_path):
    (tmp_path / "flashctl.toml").write_text('[plugins]\npaths = ["nowhere"]\n')
    with pytest.raises(ConfigError, match="nowhere"):
        host_for(load_config())


def test_misspelled_hook_fails_loudly(tmp_path):
    (tmp_path / "bad.py").write_text("from flashctl import hookimpl\n\n@hookimpl\ndef register_augmentation(register):\n    pass\n")
    with pytest.raises(ConfigError, match="register_augmentation"):
        build_host(paths=[str(tmp_path / "bad.py")])


@pytest.mark.parametrize("call, says", [
    ('register("odd", f, higher_is_better=True, higher_better=True)', "unknown trait 'higher_better'"),
    ('register("odd", f, requires_target="yes")', "trait 'requires_target' = 'yes': expected a bool"),
    ('register("odd", f, higher_is_better={"psnr": "up"})', "trait 'higher_is_better' = {'psnr': 'up'}: expected a direction"),
])
def test_an_unknown_or_mistyped_trait_fails_that_plugin_in_one_line(tmp_path, call, says):
    (tmp_path / "odd.py").write_text(f"from flashctl import hookimpl\n\n\ndef f(options, ctx):\n    pass\n\n\n"
                                     f"@hookimpl\ndef register_metrics(register):\n    {call}\n")
    host = build_host(paths=[str(tmp_path / "odd.py")])
    [failure] = host.failures
    assert failure.name == "local:odd" and failure.source == "register_metrics"
    assert failure.error.startswith("TypeError: plugin 'local:odd', metric 'odd': " + says) and "\n" not in failure.error
    assert "odd" not in host.registry.names("metric") and BUILTINS <= {p.name for p in host.plugins}


def test_a_video_format_must_name_its_extensions(tmp_path):
    (tmp_path / "fmt.py").write_text("from flashctl import hookimpl\n\n@hookimpl\n"
                                     "def register_video_formats(register):\n    register('webm', print)\n")
    [failure] = build_host(paths=[str(tmp_path / "fmt.py")]).failures
    assert "video_format 'webm': missing trait 'extensions'" in failure.error


def test_traits_are_typed_per_kind():
    registry = build_host().registry
    motion_track = registry.get("metric", "motion-track").traits
    assert motion_track.direction("gain") == NEAR_ONE and motion_track.direction("correlation") is True
    assert motion_track.describe() == "correlation↑ gain→1, requires_target"
    assert registry.get("video_format", "mp4").traits.extensions == (".mp4",)
    assert registry.get("augmentation", "hflip").traits.describe() == ""
    with pytest.raises(ValidationError):
        registry.get("augmentation", "blur").traits.preserves_motion = False  # frozen


@pytest.mark.parametrize("kind", ["metrics", "metric", "video-formats"])
def test_plugins_kind_takes_singular_plural_and_dashes(capsys, kind):
    r = run(capsys, "plugins", "--kind", kind, "--json")
    components = json.loads(r.out)["components"]
    assert r.code == 0 and components and len({c["kind"] for c in components}) == 1
    if kind.startswith("metric"):
        assert next(c for c in components if c["name"] == "fvd")["aggregate"] is True
    bad = run(capsys, "plugins", "--kind", "metricz")
    assert bad.code == 2 and "one of: backbone" in bad.err
