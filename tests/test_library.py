"""MotionLibrary: names, manifest, lock (across processes), atomic staging, frame cache, verify."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from flashctl import versions as versions_module
from flashctl.errors import (FlashctlError, InvalidActionNameError, LibraryBusyError, ManifestError,
                             MotionNotFoundError, StaleCacheError)
from flashctl.files import atomic_write, sha256_file
from flashctl.library import Drift, MotionLibrary, validate_action_name
from flashctl.manifest import ClipEntry, MotionManifest

HOLD_LOCK = """
import sys
from pathlib import Path
from flashctl.library import MotionLibrary
with MotionLibrary(Path(sys.argv[1])).lock(sys.argv[2]):
    print("locked", flush=True)
    sys.stdin.readline()
"""


@pytest.fixture
def lib(tmp_path):
    return MotionLibrary(tmp_path / "motions")


def make_action(lib: MotionLibrary, name: str, clips: dict[str, bytes] | None = None, **fields) -> Path:
    """An action with byte-string 'clips' (the library never decodes them) and a matching manifest."""
    clips = {"a.mp4": b"clip a", "b.mp4": b"clip b"} if clips is None else clips
    folder = lib.path(name)
    (folder / "clips").mkdir(parents=True)
    entries = []
    for file, data in clips.items():
        (folder / "clips" / file).write_bytes(data)
        entries.append(ClipEntry(file=f"clips/{file}", sha256=sha256_file(folder / "clips" / file)))
    lib.write_manifest(name, MotionManifest(name=name, prompt=fields.pop("prompt", f"a person doing {name}"),
                                            clips=entries, **fields))
    return folder


@contextmanager
def held_elsewhere(lib: MotionLibrary, action: str):
    """Another Python process holding ``action``'s lock until the block ends; yields its pid."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lib.root), action],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc.pid
    finally:
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(timeout=30)


# -- names ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["wave", "soccer_shot", "golf-swing", "a", "9lives", "x" * 64])
def test_valid_action_names(name):
    assert validate_action_name(name) == name


@pytest.mark.parametrize("name", ["", "Kick", "a b", "../x", "a/b", "/abs", "..", "-lead", "_lead", "x" * 65, "café"])
def test_invalid_action_names(lib, name):
    with pytest.raises(InvalidActionNameError) as info:
        lib.path(name)
    assert repr(name) in info.value.message and "soccer_shot" in info.value.hint


def test_names_exists_require(lib):
    assert lib.names() == []
    make_action(lib, "wave")
    make_action(lib, "squat")
    lib.path("half").mkdir()  # no motion.toml: not an action
    (lib.root / ".staging").mkdir()
    assert lib.names() == ["squat", "wave"]
    assert lib.exists("wave") and not lib.exists("half")
    assert lib.require("wave") == lib.root / "wave"
    with pytest.raises(MotionNotFoundError) as info:
        lib.require("golf-swing")
    assert info.value.message == f"motion 'golf-swing' not found in {lib.root}; available: squat, wave"
    assert '`flashctl prepare golf-swing --clips DIR --prompt "..."`' in info.value.hint


# -- manifest ------------------------------------------------------------------------------
def test_manifest_round_trip(lib):
    tricky = 'say "hi"\\ \n\ttab, ünïcode 🎬 and \x7f'
    make_action(lib, "kick", description=tricky, tags=["sport", "leg"],
                train={"steps": 50, "lr": 1e-5, "augmentations": ["invert", "grayscale"], "mam": {"motion_align": False}})
    text = (lib.path("kick") / "motion.toml").read_text()
    assert text.startswith("# motion.toml: written once by `flashctl prepare`")
    manifest = lib.manifest("kick")
    assert manifest.description == tricky and manifest.tags == ["sport", "leg"]
    assert manifest.train == {"steps": 50, "lr": 1e-5, "augmentations": ["invert", "grayscale"], "mam": {"motion_align": False}}
    assert [c.file for c in manifest.clips] == ["clips/a.mp4", "clips/b.mp4"]


def test_write_manifest_never_rewrites(lib):
    make_action(lib, "kick")
    before = (lib.path("kick") / "motion.toml").read_bytes()
    with pytest.raises(FlashctlError, match="never rewrites"):
        lib.write_manifest("kick", MotionManifest(name="kick", prompt="other"))
    assert (lib.path("kick") / "motion.toml").read_bytes() == before


def _edit(lib, action, old, new):
    path = lib.path(action) / "motion.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize("old, new, where, hint", [
    ('prompt = "', 'prompt = ', ":6:", "syntax"),                           # malformed TOML: file:line:col
    ("license = ", "licence = ", "clips[0].licence: unknown key", "did you mean 'license'?"),
    ("sha256 = \"", "sha256 = \"zz", "clips[0].sha256: must be 64 lowercase hex", "fix the value"),
    ('file = "clips/a.mp4"', 'file = "../../etc/passwd"', "clips[0].file: must be a relative path", "fix"),
    ("tags = []", "tags = []\n[train]\nstepz = 3", "train.stepz: unknown key", "did you mean 'steps'?"),
    ("tags = []", "tags = []\n[train]\nlr = \"fast\"", "train.lr:", "fix the value"),
    ('name = "kick"', 'name = "wave"', "name is 'wave' but the folder is 'kick'", "make them match"),
    ('prompt = "a person doing kick"\n', "", "prompt: field required", "fix"),
])
def test_manifest_errors_name_file_and_key(lib, old, new, where, hint):
    make_action(lib, "kick")
    path = _edit(lib, "kick", old, new)
    with pytest.raises(ManifestError) as info:
        lib.manifest("kick")
    assert info.value.message.startswith(str(path)) and where in info.value.message
    assert hint in info.value.hint and "\n" not in info.value.message


# -- atomic writes -------------------------------------------------------------------------
def test_atomic_write_replaces_or_keeps(tmp_path, monkeypatch):
    target = tmp_path / "out" / "provenance.json"
    atomic_write(target, "first")
    atomic_write(target, b"second")
    assert target.read_text() == "second"

    def crash(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        atomic_write(target, "third, half written")
    assert target.read_text() == "second" and [p.name for p in target.parent.iterdir()] == ["provenance.json"]


# -- lock ----------------------------------------------------------------------------------
def test_lock_busy_in_another_process(lib):
    make_action(lib, "kick")
    with held_elsewhere(lib, "kick") as pid:
        with pytest.raises(LibraryBusyError) as info:
            with lib.lock("kick"):
                pass
        assert info.value.message == f"motion 'kick' is busy: held by pid {pid}" and info.value.hint
        with pytest.raises(LibraryBusyError):
            lib.remove("kick")
        with lib.lock("squat"):  # other actions are free
            pass
    assert lib.exists("kick")
    with lib.lock("kick"), lib.lock("kick"):  # free again, and re-entrant within a process
        pass


# -- stage ---------------------------------------------------------------------------------
def test_stage_swaps_in_a_whole_version_and_keeps_history(lib):
    make_action(lib, "kick")
    saved = []

    def on_saved(action, path):
        saved.append((action, path, (path / "weights" / "lora.safetensors").read_text()))

    for run in range(6):
        with lib.stage("kick", on_saved=on_saved) as staging:
            (staging / "weights").mkdir()
            (staging / "weights" / "lora.safetensors").write_text(f"run {run}")
            (staging / "provenance.json").write_text(json.dumps({"run": run}))
    folder = lib.path("kick")
    assert (folder / "weights" / "lora.safetensors").read_text() == "run 5"  # the fixed links follow `current`
    assert lib.provenance("kick") == {"run": 5} and lib.version_dir("kick") == (folder / "current").resolve()
    assert saved == [("kick", folder, f"run {r}") for r in range(6)]
    kept = sorted((folder / ".versions").iterdir())
    assert len(kept) == 4  # the live one and the 3 it replaced
    assert [(v / "weights" / "lora.safetensors").read_text() for v in kept] == ["run 2", "run 3", "run 4", "run 5"]
    assert (lib.version_dir("kick") / "eval").is_dir() and (folder / "eval").is_dir()
    assert list((lib.root / ".staging").iterdir()) == []


def test_stage_failure_half_way_leaves_live_motion(lib):
    make_action(lib, "kick")
    with lib.stage("kick") as staging:
        (staging / "weights").mkdir()
        (staging / "weights" / "lora.safetensors").write_text("good")
    called = []
    with pytest.raises(RuntimeError, match="disk on fire"):
        with lib.stage("kick", on_saved=lambda *a: called.append(a)) as staging:
            (staging / "weights").mkdir()
            (staging / "weights" / "lora.safetensors").write_text("half")
            raise RuntimeError("disk on fire")
    assert (lib.path("kick") / "weights" / "lora.safetensors").read_text() == "good"
    assert called == [] and len(list((lib.path("kick") / ".versions").iterdir())) == 1
    assert list((lib.root / ".staging").iterdir()) == []


def test_stage_keeps_the_old_version_when_the_swap_fails(lib, monkeypatch):
    make_action(lib, "kick")
    with lib.stage("kick") as staging:
        (staging / "provenance.json").write_text("old provenance")
        (staging / "weights").mkdir()
    real_replace = os.replace

    def flaky(src, dst):
        if Path(dst).name == "current":
            raise OSError(5, "I/O error")
        real_replace(src, dst)

    monkeypatch.setattr(versions_module.os, "replace", flaky)
    with pytest.raises(OSError):
        with lib.stage("kick") as staging:
            (staging / "provenance.json").write_text("new provenance")
            (staging / "weights").mkdir()
    monkeypatch.undo()
    folder = lib.path("kick")
    assert (folder / "provenance.json").read_text() == "old provenance"
    assert len(list((folder / ".versions").iterdir())) == 2  # the new one never went live ...
    with lib.stage("kick") as staging:
        (staging / "provenance.json").write_text("third")
    assert (folder / "provenance.json").read_text() == "third"
    assert [(v / "provenance.json").read_text() for v in sorted((folder / ".versions").iterdir())] == [
        "old provenance", "third"]  # ... and the next writer deleted it


def test_stage_writes_only_machine_items(lib):
    make_action(lib, "kick")
    before = (lib.path("kick") / "motion.toml").read_bytes()
    with pytest.raises(ValueError, match="motion.toml"):
        with lib.stage("kick") as staging:
            (staging / "motion.toml").write_text("name = 'hijack'")
    assert (lib.path("kick") / "motion.toml").read_bytes() == before


def test_old_layout_is_read_in_place_and_moved_to_history_on_the_next_save(lib):
    folder = make_action(lib, "kick")
    (folder / "weights").mkdir()
    (folder / "weights" / "config.json").write_text(json.dumps({"backbone": "tiny"}))
    (folder / "provenance.json").write_text(json.dumps({"files": {
        "weights/config.json": sha256_file(folder / "weights" / "config.json")}}))
    (folder / "eval").mkdir()
    (folder / "eval" / "metrics.json").write_text("{}")
    assert lib.version_dir("kick") == folder and lib.is_trained("kick") and lib.verify("kick") == []
    with lib.stage("kick") as staging:
        (staging / "weights").mkdir()
        (staging / "weights" / "config.json").write_text(json.dumps({"backbone": "new"}))
    assert lib.weights_config("kick") == {"backbone": "new"} and lib.provenance("kick") is None
    assert not (folder / "eval" / "metrics.json").exists()  # eval belongs to the version it scored
    legacy = folder / ".versions" / "0-legacy"
    assert json.loads((legacy / "weights" / "config.json").read_text()) == {"backbone": "tiny"}
    assert (legacy / "eval" / "metrics.json").is_file() and (legacy / "provenance.json").is_file()
    assert all((folder / item).is_symlink() for item in ("weights", "provenance.json", "preview.gif", "eval"))


def test_create_makes_a_new_action_in_one_rename(lib):
    with lib.create("kick") as staging:
        (staging / "clips").mkdir()
        (staging / "motion.toml").write_text('name = "kick"\nprompt = "a kick"\n')
        assert not lib.path("kick").exists()
    assert lib.names() == ["kick"] and list((lib.root / ".staging").iterdir()) == []
    with pytest.raises(FlashctlError, match="already exists"):
        with lib.create("kick"):
            pass


# -- frame cache ---------------------------------------------------------------------------
def test_frame_cache_round_trip_and_staleness(lib):
    make_action(lib, "kick")
    frames = np.random.default_rng(0).integers(0, 256, (2, 4, 8, 8, 3), dtype=np.uint8)
    meta = {"frames": 4, "fps": 8.0, "size": 8, "start": 0.0, "clips": ["a" * 64, "b" * 64]}
    lib.save_frames("kick", frames, meta)
    loaded, loaded_meta = lib.load_frames("kick", expect={"size": 8, "fps": 8.0})
    assert np.array_equal(loaded, frames) and loaded_meta == meta
    with pytest.raises(StaleCacheError) as info:
        lib.load_frames("kick", expect={"size": 16})
    assert "size is 8 in the cache but 16 now" in info.value.message and "flashctl prepare kick" in info.value.hint
    with pytest.raises(StaleCacheError, match="clips"):
        lib.load_frames("kick", expect={"clips": ["c" * 64, "b" * 64]})
    with pytest.raises(ValueError):
        lib.save_frames("kick", frames[0], meta)  # (F, S, S, 3): missing the clip axis


def test_frame_cache_missing_or_corrupt(lib):
    make_action(lib, "kick")
    with pytest.raises(StaleCacheError, match="no prepared frames") as info:
        lib.load_frames("kick")
    assert "flashctl prepare kick" in info.value.hint
    lib.cache_dir("kick").mkdir()
    (lib.cache_dir("kick") / "frames.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(StaleCacheError, match="unreadable frame cache"):
        lib.load_frames("kick")


# -- info, verify, remove ------------------------------------------------------------------
def test_info_untrained_and_trained(lib):
    make_action(lib, "kick")
    info = lib.info("kick")
    assert (info.name, info.clips, info.trained, info.backbone, info.last_trained) == ("kick", 2, False, None, None)
    with lib.stage("kick") as staging:
        (staging / "weights").mkdir()
        (staging / "weights" / "config.json").write_text(json.dumps({"backbone": {"name": "animatediff"}}))
        (staging / "provenance.json").write_text(json.dumps({"finished_at": "2025-01-02T03:04:05+00:00"}))
    info = lib.info("kick")
    assert (info.trained, info.backbone, info.last_trained) == (True, "animatediff", "2025-01-02T03:04:05+00:00")
    files = [p for p in lib.path("kick").rglob("*") if p.is_file() and not p.is_symlink()]  # links count once
    assert info.size_bytes == sum(p.stat().st_size for p in files) > 0


def test_corrupt_weights_config_names_the_file(lib):
    make_action(lib, "kick")
    (lib.weights_dir("kick")).mkdir()
    (lib.weights_dir("kick") / "config.json").write_text("{not json")
    with pytest.raises(FlashctlError, match=r"weights/config.json: not valid JSON"):
        lib.weights_config("kick")


def test_verify_reports_drift(lib):
    folder = make_action(lib, "kick")
    assert lib.verify("kick") == []
    a_sha = sha256_file(folder / "clips" / "a.mp4")
    (folder / "clips" / "a.mp4").write_bytes(b"clip a, re-encoded")
    b_sha = sha256_file(folder / "clips" / "b.mp4")
    (folder / "clips" / "b.mp4").unlink()
    (folder / "clips" / "c.mp4").write_bytes(b"stray")
    with lib.stage("kick") as staging:
        (staging / "weights").mkdir()
        (staging / "weights" / "lora.safetensors").write_bytes(b"weights")
        (staging / "provenance.json").write_text(json.dumps({"files": {"weights/lora.safetensors": "0" * 64}}))
    assert lib.verify("kick") == [
        Drift("clips/a.mp4", "modified", a_sha, sha256_file(folder / "clips" / "a.mp4")),
        Drift("clips/b.mp4", "missing", b_sha, None),
        Drift("weights/lora.safetensors", "modified", "0" * 64, sha256_file(folder / "weights" / "lora.safetensors")),
        Drift("clips/c.mp4", "untracked", None, sha256_file(folder / "clips" / "c.mp4")),
    ]


def test_remove(lib):
    make_action(lib, "kick")
    make_action(lib, "wave")
    lib.remove("kick")
    assert lib.names() == ["wave"] and not lib.path("kick").exists()
    with pytest.raises(MotionNotFoundError):
        lib.remove("kick")
