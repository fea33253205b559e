"""prepare: new actions from clips, re-normalising existing ones, and every bad input leaving disk as it was."""

from __future__ import annotations

import numpy as np
import pytest

from flashctl.config import FlashConfig
from flashctl.errors import FlashctlError, InvalidActionNameError, LibraryBusyError, StaleCacheError, VideoReadError
from flashctl.files import sha256_file
from flashctl.library import MotionLibrary
from flashctl.pipeline.prepare import cache_meta, prepare
from flashctl.progress import ListReporter
from media import make_clip, square_centre, truncate
from test_library import held_elsewhere


def setup(tmp_path, **prepare_section):
    config = FlashConfig.model_validate({"library": {"path": str(tmp_path / "motions")},
                                         "prepare": {"frames": 6, "fps": 5, "size": 16, **prepare_section}})
    return config, MotionLibrary(config.library_path())


def clip_folder(tmp_path, count=2, name="clips", **clip):
    folder = tmp_path / name
    folder.mkdir()
    for i in range(count):
        make_clip(folder / f"take{i}.mp4", **clip)
    return folder


def snapshot(root):
    """Every file under ``root`` with its bytes (to prove nothing changed)."""
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_new_action_from_folder(tmp_path):
    config, lib = setup(tmp_path)
    folder = clip_folder(tmp_path, count=2)
    make_clip(folder / "turned.mkv", rotate=90)
    (folder / "notes.txt").write_text("not a clip")
    reporter = ListReporter()
    result = prepare(config, lib, "kick", [folder], "a person kicking a ball", reporter)

    assert (result.action, result.clips, result.frames, result.size, result.fps) == ("kick", 3, 6, 16, 5)
    assert result.path == lib.path("kick") and result.warnings == []
    manifest = lib.manifest("kick")
    assert manifest.prompt == "a person kicking a ball"
    assert [c.file for c in manifest.clips] == ["clips/take0.mp4", "clips/take1.mp4", "clips/turned.mkv"]
    for clip in manifest.clips:
        original = folder / clip.file.split("/")[1]
        assert clip.sha256 == sha256_file(original) == sha256_file(lib.path("kick") / clip.file)
        assert clip.source == str(original.resolve())
    frames, meta = lib.load_frames("kick", expect=cache_meta(config, manifest))
    assert frames.shape == (3, 6, 16, 16, 3) and frames.dtype == np.uint8
    assert square_centre(frames[0, -1])[1] > square_centre(frames[0, 0])[1]  # moves right
    assert square_centre(frames[2, -1])[0] < square_centre(frames[2, 0])[0]  # rotated clip: moves up
    assert reporter.events[0] == ("start", ("prepare", 3))
    assert [e for e in reporter.events if e[0] == "advance"] == [("advance", (1, {}))] * 3
    assert lib.verify("kick") == []


def test_same_file_names_are_kept_apart(tmp_path):
    config, lib = setup(tmp_path)
    first, second = clip_folder(tmp_path, 1, "day1"), clip_folder(tmp_path, 1, "day2", frames=8)
    prepare(config, lib, "kick", [first, second], "kick", ListReporter())
    assert [c.file for c in lib.manifest("kick").clips] == ["clips/take0.mp4", "clips/take0-2.mp4"]
    assert sha256_file(lib.path("kick") / "clips" / "take0-2.mp4") == sha256_file(second / "take0.mp4")


def test_short_clip_is_padded_with_its_last_frame(tmp_path):
    config, lib = setup(tmp_path, fps=10)
    short = make_clip(tmp_path / "short.mp4", frames=4, fps=10)
    reporter = ListReporter()
    result = prepare(config, lib, "kick", [short], "kick", reporter)
    frames, _ = lib.load_frames("kick")
    assert frames.shape[1] == 6 and (frames[0, 3] == frames[0, 4]).all() and (frames[0, 3] == frames[0, 5]).all()
    assert not (frames[0, 2] == frames[0, 3]).all()
    assert len(result.warnings) == 1 and "short.mp4 has 4 frames" in result.warnings[0]
    assert reporter.notes("warning") == result.warnings


def test_more_clips_than_max_is_a_warning(tmp_path):
    config, lib = setup(tmp_path, max_clips=2)
    reporter = ListReporter()
    result = prepare(config, lib, "kick", [clip_folder(tmp_path, count=3, frames=4)], "kick", reporter)
    assert result.clips == 3 and lib.load_frames("kick")[0].shape[0] == 3
    assert any("3 clips given" in w and "prepare.max_clips" in w for w in result.warnings)
    assert any("3 clips given" in n for n in reporter.notes("warning"))


@pytest.mark.parametrize("bad", ["missing", "truncated", "empty", "text", "not-a-video-folder"])
def test_a_bad_clip_anywhere_writes_nothing(tmp_path, bad):
    config, lib = setup(tmp_path)
    good = make_clip(tmp_path / "good.mp4")
    path = tmp_path / "bad.mp4"
    if bad == "truncated":
        truncate(make_clip(path))
    elif bad == "empty":
        path.write_bytes(b"")
    elif bad == "text":
        path.write_text("hello")
    elif bad == "not-a-video-folder":
        path = tmp_path / "docs"
        path.mkdir()
        (path / "readme.txt").write_text("no clips here")
    with pytest.raises(VideoReadError) as info:
        prepare(config, lib, "kick", [good, path], "kick", ListReporter())
    assert str(path) in info.value.message
    assert not lib.path("kick").exists() and snapshot(lib.root) == {}


def test_zero_clips_names_the_folder(tmp_path):
    config, lib = setup(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoReadError, match="empty: no video files in this folder") as info:
        prepare(config, lib, "kick", [tmp_path / "empty"], "kick")
    assert ".mp4" in info.value.hint
    with pytest.raises(VideoReadError, match="no clips were given"):
        prepare(config, lib, "kick", [], "kick")


def test_new_action_needs_a_prompt_and_a_valid_name(tmp_path):
    config, lib = setup(tmp_path)
    folder = clip_folder(tmp_path, 1)
    with pytest.raises(FlashctlError, match="needs a prompt") as info:
        prepare(config, lib, "kick", [folder], "  ")
    assert "--prompt" in info.value.hint
    with pytest.raises(InvalidActionNameError):
        prepare(config, lib, "../kick", [folder], "kick")
    assert snapshot(lib.root) == {}


def test_existing_action_refuses_new_clips(tmp_path):
    config, lib = setup(tmp_path)
    prepare(config, lib, "kick", [clip_folder(tmp_path, 1)], "kick")
    before = snapshot(lib.root)
    with pytest.raises(FlashctlError, match="already exists") as info:
        prepare(config, lib, "kick", [make_clip(tmp_path / "more.mp4")], None)
    assert "motion.toml" in info.value.hint and "flashctl motions rm kick" in info.value.hint
    assert snapshot(lib.root) == before


def test_reprepare_after_geometry_change(tmp_path):
    config, lib = setup(tmp_path)
    prepare(config, lib, "kick", [clip_folder(tmp_path, 2)], "kick")
    bigger, _ = setup(tmp_path, size=24, frames=4)
    with pytest.raises(StaleCacheError, match="stale"):
        lib.load_frames("kick", expect=cache_meta(bigger, lib.manifest("kick")))
    manifest_before = (lib.path("kick") / "motion.toml").read_bytes()
    result = prepare(bigger, lib, "kick", None, None)
    frames, _ = lib.load_frames("kick", expect=cache_meta(bigger, lib.manifest("kick")))
    assert frames.shape == (2, 4, 24, 24, 3) and (result.size, result.frames) == (24, 4)
    assert (lib.path("kick") / "motion.toml").read_bytes() == manifest_before


def test_reprepare_refuses_an_edited_clip(tmp_path):
    config, lib = setup(tmp_path)
    prepare(config, lib, "kick", [clip_folder(tmp_path, 2)], "kick")
    make_clip(lib.path("kick") / "clips" / "take1.mp4", frames=5)  # re-encoded behind the manifest's back
    before = snapshot(lib.root)
    with pytest.raises(FlashctlError, match="take1.mp4 does not match its sha256"):
        prepare(config, lib, "kick", None, None)
    assert snapshot(lib.root) == before


def test_reprepare_unknown_action(tmp_path):
    config, lib = setup(tmp_path)
    with pytest.raises(VideoReadError, match="does not exist") as info:
        prepare(config, lib, "golf", None, None)
    assert "flashctl prepare golf --clips DIR" in info.value.hint


def test_prepare_fails_at_once_when_the_action_is_locked(tmp_path):
    config, lib = setup(tmp_path)
    with held_elsewhere(lib, "kick"):
        with pytest.raises(LibraryBusyError, match="motion 'kick' is busy"):
            prepare(config, lib, "kick", [clip_folder(tmp_path, 1)], "kick")
    assert not lib.exists("kick")
