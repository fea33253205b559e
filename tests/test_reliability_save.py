"""Reliability: a save killed (SIGKILL, in a forked child) after every filesystem step leaves a whole motion.

After each kill: the motion loads, verify passes, and every machine-written file is from the old
save or every one is from the new save. Then the next writer cleans up and saves normally.
"""

from __future__ import annotations

import json
import os
import signal

import pytest

from flashctl import versions
from flashctl.files import sha256_file
from flashctl.library import MotionLibrary
from flashctl.manifest import MotionManifest

ITEMS = {"weights/config.json", "weights/lora.safetensors", "preview.gif"}


def _write_version(folder, tag: str) -> None:
    """A tiny stand-in for a trained motion, every file marked with ``tag``, provenance hashing them."""
    (folder / "weights").mkdir()
    (folder / "weights" / "config.json").write_text(json.dumps({"tag": tag}))
    for rel in ITEMS - {"weights/config.json"}:
        (folder / rel).write_text(f"{tag} {rel}")
    files = {rel: sha256_file(folder / rel) for rel in sorted(ITEMS)}
    (folder / "provenance.json").write_text(json.dumps({"tag": tag, "files": files}))


def _tags(lib: MotionLibrary, action: str) -> set[str]:
    """The tag of every machine-written file, read through the live version and through the fixed paths."""
    version, folder = lib.version_dir(action), lib.path(action)
    tags = {lib.weights_config(action)["tag"], lib.provenance(action)["tag"]}
    for root in (version, folder):
        tags |= {(root / rel).read_text().split()[0] for rel in ITEMS - {"weights/config.json"}}
        tags.add(json.loads((root / "weights" / "config.json").read_text())["tag"])
    return tags


def _save(lib: MotionLibrary, action: str, tag: str) -> None:
    with lib.stage(action) as staging:
        _write_version(staging, tag)


def _killed_save(lib: MotionLibrary, action: str, tag: str, kill_at: int) -> None:
    """Fork a child that saves ``tag`` and SIGKILLs itself after filesystem step ``kill_at`` (0: while staging)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            count = []

            def hook(label):
                count.append(label)
                if len(count) == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)

            versions.after_step = hook
            with lib.stage(action) as staging:
                _write_version(staging, tag)
                if kill_at == 0:
                    os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"child exited with {status}"


def _steps(tmp_path, prepare) -> list[str]:
    """The labels of every filesystem step of the save under test, recorded by a save that is not killed."""
    lib = prepare(MotionLibrary(tmp_path / "count"))
    labels = []
    versions.after_step = labels.append
    try:
        _save(lib, "kick", "new")
    finally:
        versions.after_step = None
    return labels


def _old_layout(lib: MotionLibrary) -> MotionLibrary:
    """A motion saved before versions: weights/, provenance.json, preview.gif and eval/ in the action folder."""
    folder = lib.path("kick")
    (folder / "clips").mkdir(parents=True)
    lib.write_manifest("kick", MotionManifest(name="kick", prompt="a kick"))
    _write_version(folder, "old")
    (folder / "eval").mkdir()
    return lib


def _versioned(lib: MotionLibrary) -> MotionLibrary:
    """A motion saved 4 times already (3 old versions kept), whose live version is 'old'."""
    (lib.path("kick") / "clips").mkdir(parents=True)
    lib.write_manifest("kick", MotionManifest(name="kick", prompt="a kick"))
    for tag in ("v1", "v2", "v3", "old"):
        _save(lib, "kick", tag)
    return lib


@pytest.mark.parametrize("prepare", [_old_layout, _versioned], ids=["old-layout", "versioned"])
def test_kill_after_every_save_step_leaves_the_whole_old_or_whole_new_motion(tmp_path, prepare):
    labels = _steps(tmp_path, prepare)
    kinds = {label.split()[0] for label in labels}
    assert {"fsync", "rename", "symlink", "replace"} <= kinds, labels  # staging in, the swap
    assert ({"link", "exchange"} if prepare is _old_layout else {"rmtree"}) <= kinds, labels  # adopt / prune
    seen = set()
    for kill_at in range(len(labels) + 1):
        lib = prepare(MotionLibrary(tmp_path / f"kill-{kill_at}"))
        _killed_save(lib, "kick", "new", kill_at)
        tags = _tags(lib, "kick")
        assert len(tags) == 1, f"killed after step {kill_at} ({labels[kill_at - 1] if kill_at else 'staging'}): {tags}"
        assert lib.verify("kick") == [] and lib.info("kick").trained
        seen |= tags
        _save(lib, "kick", "next")  # the next writer cleans up after the killed one
        assert _tags(lib, "kick") == {"next"} and lib.verify("kick") == []
        assert list((lib.root / ".staging").iterdir()) == []
        assert not [p for p in lib.path("kick").iterdir() if ".tmp-" in p.name]
        kept = sorted(p.name for p in (lib.path("kick") / ".versions").iterdir())
        assert len(kept) <= versions.KEEP + 1 and kept[-1] == lib.version_dir("kick").name
    assert seen == {"old", "new"}  # early kills keep the old motion, late ones the new
