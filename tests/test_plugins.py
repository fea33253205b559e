"""Plugin discovery: entry points, failures captured, duplicates, disable list, local files."""

from __future__ import annotations

import pytest

from flashctl.config import load_config
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
    assert spec.plugin == "augment" and spec.attrs["preserves_motion"] is True


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
