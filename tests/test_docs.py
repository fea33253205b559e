"""The docs cannot drift: CLI and config references are regenerated and compared; README commands match CI."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import flashctl.hookspecs as hookspecs

REPO = Path(__file__).resolve().parents[1]


def _gen_docs():
    spec = importlib.util.spec_from_file_location("gen_docs", REPO / "scripts" / "gen_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_matches_help():
    assert (REPO / "docs" / "cli.md").read_text() == _gen_docs().cli_markdown() + "\n", \
        "docs/cli.md is stale: run `python scripts/gen_docs.py`"


def test_cli_reference_has_a_section_per_command_and_subcommand():
    text = (REPO / "docs" / "cli.md").read_text()
    for command in ("prepare", "train", "animate", "eval", "synth", "motions list", "motions verify", "config show"):
        assert f"## flashctl {command}\n" in text, command
    assert "--guidance" in text  # option help reaches the reference


def test_config_reference_matches_models():
    assert (REPO / "docs" / "config.md").read_text() == _gen_docs().config_markdown() + "\n", \
        "docs/config.md is stale: run `python scripts/gen_docs.py`"


def test_readme_test_command_is_what_ci_runs():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    test_cmd = re.search(r"# run the tests\n(.+)\n", readme).group(1).strip()
    assert test_cmd in ci


def test_every_hook_is_documented_in_the_plugin_guide():
    guide = (REPO / "README.md").read_text()
    hooks = [name for name in vars(hookspecs) if name.startswith(("register_", "resolve_", "on_"))]
    assert hooks and all(f"`{h}" in guide for h in hooks), [h for h in hooks if f"`{h}" not in guide]


def _blocks(lang: str, after: str) -> list[str]:
    text = (REPO / "README.md").read_text().split(after, 1)[1]
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_readme_plugin_example_works_as_written(tmp_path):
    import torch

    from flashctl.config import load_config, validate_components
    from flashctl.plugins import host_for

    (tmp_path / "flashctl_tint.py").write_text(_blocks("python", "## Write a plugin")[0])
    (tmp_path / "flashctl.toml").write_text(_blocks("toml", "## Write a plugin")[0])
    config = load_config()
    host = host_for(config)
    parsed = validate_components(config, host.registry)
    assert parsed[("augmentation", "tint")].strength == 0.3
    assert host.registry.get("augmentation", "tint").traits.preserves_motion is True
    tint = host.registry.create("augmentation", "tint", {"strength": 0.3})
    video = torch.zeros(4, 3, 8, 8)
    out = tint(video, torch.Generator().manual_seed(0))
    assert out.shape == video.shape and not torch.equal(out, video)
    assert torch.equal(out[0], out[3])  # one draw per clip, the same on every frame
