"""Reliability: a broken action never hides the others; storage faults are one line with a fix.

Each case asserts the exit code, the one-line message and that nothing saved changed.
"""

from __future__ import annotations

import errno
import json
import re

import numpy as np
import pytest
from PIL import Image

from cli_kit import run
from media import make_clip
from motion_kit import make_action, tiny_config
from flashctl.pipeline import prepare as prepare_module


def _library(tmp_path):
    (tmp_path / "flashctl.toml").write_text("")
    config = tiny_config(tmp_path)
    make_action(config, "good")
    library = make_action(config, "bad")
    (library.path("bad") / "motion.toml").write_text('name = "bad"\nprompt = \n')
    return library


def _one_line(result, code: int, *needles: str) -> list[str]:
    assert result.code == code and "Traceback" not in result.err and "internal error" not in result.err, result
    lines = result.err.strip().splitlines()[-2:]  # after any progress output
    assert lines[0].startswith("error:") and lines[1].startswith("hint:"), result.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines


def test_list_shows_a_broken_action_and_the_others(tmp_path, capsys):
    _library(tmp_path)
    result = run(capsys, "motions", "list", "--json")
    assert result.code == 0, result.err
    rows = {row["name"]: row for row in json.loads(result.out)}
    assert rows["good"]["broken"] is None and rows["good"]["clips"] == 2
    assert "motion.toml:2:" in rows["bad"]["broken"]
    table = run(capsys, "motions", "list")
    assert table.code == 0 and "good" in table.out and "broken bad:" in table.err


def test_verify_reports_a_broken_action_and_goes_on(tmp_path, capsys):
    _library(tmp_path)
    result = run(capsys, "motions", "verify", "--json")
    assert result.code == 1
    report = json.loads(result.out)
    assert report["good"] == []
    assert [(d["file"], d["problem"]) for d in report["bad"]] == [("motion.toml", "unreadable")]
    text = run(capsys, "motions", "verify")
    assert "ok     good" in text.out and "drift  bad: motion.toml: unreadable" in text.out


def test_library_path_that_is_a_file(tmp_path, capsys):
    (tmp_path / "motions").write_text("not a folder")
    (tmp_path / "flashctl.toml").write_text("")
    clip = make_clip(tmp_path / "a.mp4", frames=4, size=(32, 32), fps=8)
    result = run(capsys, "prepare", "wave", "--clips", clip, "--prompt", "a wave")
    _one_line(result, 1, "motions is a file, not a folder")
    assert (tmp_path / "motions").read_text() == "not a folder"


@pytest.mark.parametrize("code, needle", [(errno.ENOSPC, "no space left on the device holding"),
                                          (errno.EROFS, "cannot write"), (errno.EACCES, "cannot write")])
def test_storage_faults_during_a_save_are_one_line_and_leave_nothing(tmp_path, capsys, monkeypatch, code, needle):
    (tmp_path / "flashctl.toml").write_text("[prepare]\nframes = 4\nsize = 32\n")
    clip = make_clip(tmp_path / "a.mp4", frames=4, size=(32, 32), fps=8)

    def fail(src, dst, **kwargs):
        raise OSError(code, "injected", str(dst))

    monkeypatch.setattr(prepare_module.shutil, "copy2", fail)
    result = run(capsys, "prepare", "wave", "--clips", clip, "--prompt", "a wave")
    lines = _one_line(result, 1, needle, "wave")
    assert "library.path" in lines[1]
    assert not (tmp_path / "motions" / "wave").exists() and not list((tmp_path / "motions" / ".staging").iterdir())


def test_disk_full_says_how_much_is_free(tmp_path):
    from flashctl.errors import storage_error

    error = storage_error(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x" / "y.bin")))
    assert re.search(rf"holding {re.escape(str(tmp_path))} \(\d+\.\d MB free\) while writing "
                     rf"{re.escape(str(tmp_path / 'x' / 'y.bin'))}$", error.message), error.message


def test_animate_out_that_is_a_file_fails_before_the_model_loads(tmp_path, capsys):
    (tmp_path / "flashctl.toml").write_text("")
    image = tmp_path / "me.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    (tmp_path / "taken").write_text("keep me")
    result = run(capsys, "animate", "-a", "nothing", "-i", image, "-o", tmp_path / "taken")
    _one_line(result, 1, str(tmp_path / "taken"), "a file is in the way")
    assert (tmp_path / "taken").read_text() == "keep me"


def test_library_api_raises_the_same_one_line_storage_error(tmp_path):
    """Python callers get the CLI's message: a fault in a save (the caller's own writes included) is a StorageError."""
    from flashctl.errors import StorageError

    library = _library(tmp_path)
    files = lambda: sorted(str(p) for p in library.root.rglob("*") if p.is_file() and ".locks" not in p.parts)
    before = files()
    with pytest.raises(StorageError) as full:
        with library.stage("good") as staging:
            raise OSError(errno.ENOSPC, "No space left on device", str(staging / "weights" / "lora.safetensors"))
    assert "no space left on the device holding" in full.value.message and "lora.safetensors" in full.value.message
    assert isinstance(full.value.__cause__, OSError) and "\n" not in full.value.message
    assert files() == before and not list((library.root / ".staging").iterdir())  # no staging left, nothing changed


def test_library_api_read_only_cache_write_is_one_line(tmp_path, monkeypatch):
    from flashctl import library as library_module
    from flashctl.errors import StorageError

    library = _library(tmp_path)
    cache = library.cache_dir("good") / "frames.safetensors"
    data = cache.read_bytes()

    def read_only(fd):
        raise OSError(errno.EROFS, "Read-only file system", str(cache))

    monkeypatch.setattr(library_module.os, "fsync", read_only)
    frames, meta = np.zeros((1, 4, 32, 32, 3), np.uint8), {"frames": 4}
    with pytest.raises(StorageError) as info:
        library.save_frames("good", frames, meta)
    assert info.value.message == f"cannot write {cache}: Read-only file system" and "writable" in info.value.hint
    assert cache.read_bytes() == data and not [p for p in cache.parent.iterdir() if ".tmp-" in p.name]
