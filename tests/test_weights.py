"""The weights resolver: local folders, the local Hugging Face cache, never the network offline."""

from pathlib import Path

from flashctl.plugins import build_host
from flashctl_weights.resolve import resolve_local_or_hub


def _fake_hub_cache(root: Path, repo: str) -> Path:
    """The on-disk layout huggingface_hub writes: models--owner--name/{refs/main, snapshots/<sha>/}."""
    commit = "0" * 40
    repo_dir = root / f"models--{repo.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    return snapshot


def test_existing_folder_resolves_to_itself(tmp_path):
    assert resolve_local_or_hub(str(tmp_path), offline=True) == tmp_path.resolve()


def test_missing_path_is_not_ours(tmp_path):
    assert resolve_local_or_hub(str(tmp_path / "nope"), offline=True) is None
    assert resolve_local_or_hub("./relative/missing/dir", offline=False) is None


def test_hub_id_found_in_local_cache(tmp_path):
    snapshot = _fake_hub_cache(tmp_path, "owner/model")
    assert resolve_local_or_hub("owner/model", offline=True, hub_cache=tmp_path) == snapshot


def test_hub_id_absent_offline_is_none(tmp_path):
    _fake_hub_cache(tmp_path, "owner/model")
    assert resolve_local_or_hub("owner/other", offline=True, hub_cache=tmp_path) is None


def test_hook_is_wired_through_the_plugin_host(tmp_path):
    host = build_host()
    assert host.pm.hook.resolve_weights(ref=str(tmp_path), offline=True) == tmp_path.resolve()
    assert host.pm.hook.resolve_weights(ref=str(tmp_path / "x"), offline=True) is None


def test_build_context_resolves_through_the_hook(tmp_path):
    from flashctl.config import FlashConfig
    from flashctl.context import context_for

    config = FlashConfig.model_validate({"runtime": {"dtype": "bfloat16"}})
    ctx = context_for(config, build_host())
    assert (ctx.dtype, ctx.offline) == ("bfloat16", True)
    assert ctx.resolve_weights(str(tmp_path)) == tmp_path.resolve()
    assert ctx.resolve_weights("owner/not-cached") is None
