"""Reliability with several writers: one writer per action, any number of actions at once.

A second writer on an action (another process, or another thread of the same one) is refused at once
with the one-line ``motion 'X' is busy: held by pid N`` and changes nothing; saves of different actions
run in parallel and all land. Saves here are tiny stand-ins written through the library's stage/lock API.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from cli_kit import run
from flashctl.errors import LibraryBusyError
from flashctl.library import MotionLibrary
from media import make_clip
from motion_kit import make_action, tiny_config

HOLDER = r"""
import json, sys
from pathlib import Path
from flashctl.library import MotionLibrary
root, action, tag = sys.argv[1:4]
lib = MotionLibrary(Path(root))
def write(staging):
    (staging / "weights").mkdir()
    (staging / "weights" / "config.json").write_text(json.dumps({"tag": tag}))
    (staging / "provenance.json").write_text(json.dumps({"tag": tag}))
if lib.exists(action):
    with lib.stage(action) as staging:
        write(staging)
        print("holding", flush=True)
        sys.stdin.readline()  # the test says when to finish the save
else:  # a new action: hold the lock as prepare does while it creates the action
    with lib.lock(action):
        print("holding", flush=True)
        sys.stdin.readline()
print("saved", flush=True)
"""


def _snapshot(root: Path) -> dict[str, str]:
    """Every file of the library (locks aside) and its sha256; links as their targets."""
    return {str(p.relative_to(root)): (f"-> {os.readlink(p)}" if p.is_symlink() else
                                       hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if (p.is_symlink() or p.is_file()) and ".locks" not in p.parts}


def _library(tmp_path: Path, *actions: str) -> MotionLibrary:
    (tmp_path / "flashctl.toml").write_text("")
    config = tiny_config(tmp_path)
    library = MotionLibrary(config.library_path())
    for action in actions:
        make_action(config, action)
    return library


@contextmanager
def _holder(library: MotionLibrary, action: str, tag: str = "first"):
    """Another process in the middle of a save of ``action`` (it holds the lock); yields it, then lets it finish."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(library.root), action, tag], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        assert proc.stdout.readline() == "holding\n", proc.stderr.read()
        yield proc
    finally:
        out, err = proc.communicate("go\n", timeout=60)
    assert proc.returncode == 0 and out == "saved\n", err


def _busy(result, action: str, pid: int) -> None:
    assert result.code == 1 and "Traceback" not in result.err, result
    lines = result.err.strip().splitlines()
    assert lines[-2] == f"error: motion '{action}' is busy: held by pid {pid}", lines
    assert lines[-1].startswith("hint: wait for that flashctl command to finish"), lines
    assert result.out == ""


def _tag(library: MotionLibrary, action: str) -> str | None:
    return (library.weights_config(action) or {}).get("tag")


def test_a_second_process_saving_the_same_action_is_refused_and_the_first_save_lands(tmp_path):
    library = _library(tmp_path, "wave")
    with _holder(library, "wave", "first") as holder:
        before = _snapshot(library.root)
        with pytest.raises(LibraryBusyError) as busy:
            with library.stage("wave") as staging:
                (staging / "provenance.json").write_text("{}")
        assert busy.value.message == f"motion 'wave' is busy: held by pid {holder.pid}"
        assert _snapshot(library.root) == before  # the refused writer wrote nothing, not even a staging folder
    assert _tag(library, "wave") == "first"


@pytest.mark.parametrize("argv", [("motions", "rm", "wave", "--yes"), ("train", "wave", "--set", "train.steps=1")])
def test_a_cli_writer_while_a_save_runs_is_refused(tmp_path, capsys, argv):
    """`motions rm` deletes nothing; `train` is refused before it trains."""
    library = _library(tmp_path, "wave")
    with _holder(library, "wave") as holder:
        before = _snapshot(library.root)
        _busy(run(capsys, *argv), "wave", holder.pid)
        assert _snapshot(library.root) == before
    assert library.exists("wave") and _tag(library, "wave") == "first"


def test_prepare_of_a_new_action_another_process_is_creating_is_refused(tmp_path, capsys):
    (tmp_path / "flashctl.toml").write_text("[prepare]\nframes = 4\nsize = 32\n")
    library = MotionLibrary(tmp_path / "motions")
    clip = make_clip(tmp_path / "a.mp4", frames=4, size=(32, 32), fps=8)
    with _holder(library, "wave") as holder:
        before = _snapshot(library.root)
        _busy(run(capsys, "prepare", "wave", "--clips", clip, "--prompt", "a wave"), "wave", holder.pid)
        assert _snapshot(library.root) == before and not library.exists("wave")


def test_a_second_thread_saving_the_same_action_is_refused(tmp_path):
    """The lock is per thread too: a thread of the same process does not slip in through re-entrancy."""
    library = _library(tmp_path, "wave")
    holding, finish, errors = threading.Event(), threading.Event(), []

    def first():
        try:
            with library.stage("wave") as staging:
                (staging / "weights").mkdir()
                (staging / "weights" / "config.json").write_text(json.dumps({"tag": "first"}))
                holding.set()
                finish.wait(30)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            holding.set()

    thread = threading.Thread(target=first)
    thread.start()
    holding.wait(30)
    before = _snapshot(library.root)
    try:
        with pytest.raises(LibraryBusyError) as busy:
            with library.stage("wave") as staging:
                (staging / "provenance.json").write_text("{}")
        assert busy.value.message == f"motion 'wave' is busy: held by pid {os.getpid()}"
        assert _snapshot(library.root) == before
    finally:
        finish.set()
        thread.join(30)
    assert not errors and _tag(library, "wave") == "first"
    with library.stage("wave") as staging:  # and the lock is free again for this thread
        (staging / "weights").mkdir()
        (staging / "weights" / "config.json").write_text(json.dumps({"tag": "second"}))
    assert _tag(library, "wave") == "second"


def test_two_actions_saved_by_two_processes_at_once_both_land(tmp_path):
    library = _library(tmp_path, "wave", "kick")
    with _holder(library, "wave", "w1"), _holder(library, "kick", "k1"):
        pass  # both hold their lock at the same moment, then both finish
    assert _tag(library, "wave") == "w1" and _tag(library, "kick") == "k1"
    assert all(not library.verify(action) for action in ("wave", "kick"))
    assert not list((library.root / ".staging").iterdir())


def test_two_actions_saved_by_two_threads_at_once_both_land(tmp_path):
    library = _library(tmp_path, "wave", "kick")
    barrier, errors = threading.Barrier(2, timeout=30), []

    def save(action: str) -> None:
        try:
            with library.stage(action) as staging:
                (staging / "weights").mkdir()
                (staging / "weights" / "config.json").write_text(json.dumps({"tag": action}))
                barrier.wait()  # both inside a save at once
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(a,)) for a in ("wave", "kick")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert _tag(library, "wave") == "wave" and _tag(library, "kick") == "kick"


def test_a_killed_holder_frees_the_action_and_its_save_never_went_live(tmp_path):
    library = _library(tmp_path, "wave")
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(library.root), "wave", "killed"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.stdout.readline() == "holding\n"
    proc.kill()  # SIGKILL in the middle of the save: the kernel drops its lock
    proc.wait(30)
    proc.stdout.close()
    proc.stdin.close()
    assert _tag(library, "wave") is None  # the killed save never went live
    with library.stage("wave") as staging:
        (staging / "weights").mkdir()
        (staging / "weights" / "config.json").write_text(json.dumps({"tag": "next"}))
    assert _tag(library, "wave") == "next" and not list((library.root / ".staging").iterdir())
