"""motions pack/unpack: round trip, refusals of damaged or unsafe archives, never replacing a newer motion,
and what the per-action lock does for an unpack (contention, a dead holder, a foreign host, a refused lock)."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from cli_kit import run
from flashctl.library import MotionLibrary
from flashctl.pack import MANIFEST, SUFFIX, read_archive
from flashctl.pipeline.animate import load_animator
from flashctl.pipeline.train import train
from motion_kit import make_action, tiny_config

HOLD = """
import sys
from pathlib import Path
from flashctl.library import MotionLibrary
with MotionLibrary(Path(sys.argv[1])).lock(sys.argv[2]):
    print("locked", flush=True)
    sys.stdin.readline()
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory, host):
    """(config, library) of site A, where 'slide' is trained for one step."""
    config = tiny_config(tmp_path_factory.mktemp("site_a"))
    train(config, make_action(config), "slide", host, steps=1)
    return config, MotionLibrary(config.library_path())


@pytest.fixture
def archive(trained, tmp_path, capsys) -> Path:
    _, library = trained
    (tmp_path / "out").mkdir()
    result = run(capsys, "motions", "pack", "slide", "--library", library.root, "-o", tmp_path / "out")
    assert result.code == 0, result.err
    return Path(result.out.strip())


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _snapshot(root: Path) -> dict[str, tuple[str, bytes | str]]:
    if not root.exists():
        return {}
    return {p.relative_to(root).as_posix(): ("link", os.readlink(p)) if p.is_symlink() else
            ("file", p.read_bytes()) if p.is_file() else ("dir", b"") for p in sorted(root.rglob("*"))}


def _members(path: Path) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(path, "r:gz") as tar:
        return [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]


def _write(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _forge(source: Path, dest: Path, run_id: str, finished_at: str) -> Path:
    """A consistent archive of another run of the same motion (its provenance says ``run_id``, ``finished_at``)."""
    members = _members(source)
    head = json.loads(members[0][1])
    old_top = f"{head['action']}-{head['run_id']}"
    top = f"{head['action']}-{run_id}"
    forged = []
    for info, data in members[1:]:
        if info.name == f"{old_top}/provenance.json":
            provenance = json.loads(data)
            provenance.update(run_id=run_id, finished_at=finished_at)
            data = json.dumps(provenance).encode()
        info.name = top + info.name[len(old_top):]
        forged.append((info, data))
    for entry in head["files"]:
        data = next(d for i, d in forged if i.name == f"{top}/{entry['path']}")
        entry.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    head.update(run_id=run_id, finished_at=finished_at)
    manifest = members[0][0]
    manifest.name = f"{top}/{MANIFEST}"
    return _write(dest, [(manifest, json.dumps(head).encode())] + forged)


def _refused(result, *words: str) -> None:
    assert result.code == 1 and "Traceback" not in result.err, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: "), lines
    for word in words:
        assert word in result.err, (word, result.err)
    assert result.out == ""


# -- pack ------------------------------------------------------------------------------------------

def test_pack_writes_one_small_archive_with_its_manifest(trained, archive):
    _, library = trained
    run_id = library.provenance("slide")["run_id"]
    assert archive.name == f"slide-{run_id}{SUFFIX}"
    names = [m.name for m, _ in _members(archive)]
    top = f"slide-{run_id}"
    assert names[0] == f"{top}/{MANIFEST}"
    rels = {n[len(top) + 1:] for n in names[1:]}
    assert {"motion.toml", "provenance.json", "preview.gif", "weights/config.json"} <= rels
    assert not any(r.startswith(("eval/", "clips/", ".cache")) for r in rels), rels  # the default stays small
    head = read_archive(archive).head
    assert head["format_version"] == 1 and head["action"] == "slide" and head["run_id"] == run_id
    assert head["flashctl_version"] and {e["path"] for e in head["files"]} == rels
    version = library.version_dir("slide")
    for entry in head["files"]:
        source = library.path("slide") / "motion.toml" if entry["path"] == "motion.toml" else version / entry["path"]
        assert entry["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
        assert entry["size"] == source.stat().st_size


def test_pack_clips_only_when_asked(trained, tmp_path, capsys):
    _, library = trained
    result = run(capsys, "motions", "pack", "slide", "--library", library.root, "--clips", "-o", tmp_path / "c.tgz",
                 "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["clips"] is True
    rels = {e["path"] for e in read_archive(tmp_path / "c.tgz").head["files"]}
    assert {"clips/c0.mp4", "clips/c1.mp4"} <= rels
    fresh = MotionLibrary(tmp_path / "fresh")
    assert run(capsys, "motions", "unpack", tmp_path / "c.tgz", "--library", fresh.root).code == 0
    assert fresh.verify("slide") == []  # clips and weights both match their hashes


def test_pack_default_name_here_and_never_overwrites(trained, tmp_path, capsys):
    _, library = trained
    first = run(capsys, "motions", "pack", "slide", "--library", library.root)
    assert first.code == 0 and first.out.count("\n") == 1
    path = tmp_path / first.out.strip()  # the test runs in tmp_path
    assert path.is_file() and path.name.endswith(SUFFIX)
    path.write_bytes(b"someone else's file")
    again = run(capsys, "motions", "pack", "slide", "--library", library.root)
    _refused(again, str(path.name), "already exists", "--overwrite")
    assert path.read_bytes() == b"someone else's file"
    assert run(capsys, "motions", "pack", "slide", "--library", library.root, "--overwrite").code == 0
    assert read_archive(path).action == "slide"
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_pack_refuses_an_untrained_or_drifted_motion(tmp_path, capsys, host):
    config = tiny_config(tmp_path)
    library = make_action(config, "raw")
    _refused(run(capsys, "motions", "pack", "raw", "--library", library.root), "no trained version", "flashctl train")
    train(config, library, "raw", host, steps=1)
    lora = library.version_dir("raw") / "weights" / "lora.safetensors"
    data = bytearray(lora.read_bytes())
    data[-1] ^= 0xFF  # one byte of a tensor changes after training
    lora.write_bytes(bytes(data))
    _refused(run(capsys, "motions", "pack", "raw", "--library", library.root), "lora.safetensors")
    assert not list(tmp_path.glob(f"*{SUFFIX}"))


# -- unpack: round trip and the rules for an action that exists -------------------------------------

def test_round_trip_gives_identical_files_and_a_loadable_motion(trained, archive, tmp_path, capsys, host):
    config, library = trained
    config_b = tiny_config(tmp_path / "site_b")
    fresh = MotionLibrary(config_b.library_path())
    result = run(capsys, "motions", "unpack", archive, "--library", fresh.root, "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["outcome"] == "created" and report["run_id"] == library.provenance("slide")["run_id"]
    version_a, version_b = library.version_dir("slide"), fresh.version_dir("slide")
    expect = {k: v for k, v in _tree(version_a).items() if not k.startswith("eval/")}
    assert _tree(version_b) == expect
    assert (fresh.path("slide") / "motion.toml").read_bytes() == (library.path("slide") / "motion.toml").read_bytes()
    fresh.check_version("slide", version_b)  # what animate checks before loading
    assert fresh.version_drifts("slide", version_b) == []
    animator = load_animator(config_b, fresh, "slide", host)
    video = animator.render(np.zeros((animator.size, animator.size, 3), np.uint8), seed=0)  # (F, S, S, 3)
    assert video.shape == (animator.frames, animator.size, animator.size, 3)
    assert not (fresh.root / ".staging").exists() or not any((fresh.root / ".staging").iterdir())


def test_the_same_run_again_changes_nothing(archive, tmp_path, capsys):
    lib = MotionLibrary(tmp_path / "b")
    assert run(capsys, "motions", "unpack", archive, "--library", lib.root).code == 0
    before = _snapshot(lib.root)
    again = run(capsys, "motions", "unpack", archive, "--library", lib.root)
    assert again.code == 0 and "already in" in again.err and "nothing changed" in again.err
    assert _snapshot(lib.root) == before
    forced = run(capsys, "motions", "unpack", archive, "--library", lib.root, "--make-current", "--json")
    assert json.loads(forced.out)["outcome"] == "already-present" and _snapshot(lib.root) == before


def test_an_older_run_never_replaces_a_newer_current_motion(archive, tmp_path, capsys):
    lib = MotionLibrary(tmp_path / "b")
    current = _forge(archive, tmp_path / "cur.tgz", "20300101T000000000000Z-aaaa", "2030-01-01T00:00:00+00:00")
    older = _forge(archive, tmp_path / "old.tgz", "20290101T000000000000Z-bbbb", "2029-01-01T00:00:00+00:00")
    newer = _forge(archive, tmp_path / "new.tgz", "20310101T000000000000Z-cccc", "2031-01-01T01:00:00+02:00")
    oldest = _forge(archive, tmp_path / "oldest.tgz", "20280101T000000000000Z-dddd", "2028-01-01T00:00:00+00:00")
    assert run(capsys, "motions", "unpack", current, "--library", lib.root).code == 0

    kept = run(capsys, "motions", "unpack", older, "--library", lib.root, "--json")
    report = json.loads(kept.out)
    assert report["outcome"] == "installed-superseded" and report["current_run_id"] == "20300101T000000000000Z-aaaa"
    assert "--make-current" in report["message"] and "newer" in report["message"]
    assert lib.provenance("slide")["run_id"] == "20300101T000000000000Z-aaaa"  # current untouched
    superseded = lib.find_run("slide", "20290101T000000000000Z-bbbb")
    assert superseded is not None and superseded != lib.version_dir("slide")
    assert lib.version_drifts("slide", superseded) == []  # a whole, checked version, kept as history

    human = run(capsys, "motions", "unpack", newer, "--library", lib.root)
    assert human.code == 0 and "as the current version (newer)" in human.err and "20300101T000000000000Z-aaaa" in human.err
    assert lib.provenance("slide")["run_id"] == "20310101T000000000000Z-cccc"
    assert lib.find_run("slide", "20290101T000000000000Z-bbbb") is not None  # history survives the swap

    forced = run(capsys, "motions", "unpack", oldest, "--library", lib.root, "--make-current", "--json")
    assert json.loads(forced.out)["outcome"] == "installed-current"
    assert json.loads(forced.out)["replaced_run_id"] == "20310101T000000000000Z-cccc"
    assert lib.provenance("slide")["run_id"] == "20280101T000000000000Z-dddd"
    assert lib.verify("slide") == [] or all(d.file.startswith("clips/") for d in lib.verify("slide"))


# -- unpack: refusals, before anything is written --------------------------------------------------

def _tamper(archive: Path, dest: Path, how: str) -> Path:
    members = _members(archive)
    top = members[0][0].name.split("/")[0]
    if how == "byte":
        i = next(i for i, (m, _) in enumerate(members) if m.name.endswith(".safetensors"))
        data = bytearray(members[i][1])
        data[len(data) // 2] ^= 0x01
        members[i] = (members[i][0], bytes(data))
    elif how == "extra":
        members.append((tarfile.TarInfo(f"{top}/weights/extra.bin"), b"not in the manifest"))
    elif how in ("dotdot", "absolute"):
        name = f"{top}/../../evil.txt" if how == "dotdot" else "/tmp/evil.txt"
        members.append((tarfile.TarInfo(name), b"outside"))
    elif how == "symlink":
        info = tarfile.TarInfo(f"{top}/weights/link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        members.append((info, None))
    elif how == "device":
        info = tarfile.TarInfo(f"{top}/weights/dev")
        info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
        members.append((info, None))
    elif how == "missing":
        members = [(m, d) for m, d in members if not m.name.endswith("preview.gif")]
    return _write(dest, members)


@pytest.mark.parametrize("how, words", [
    ("byte", ["lora.safetensors", "has sha256", "the manifest says", "copy it again"]),
    ("extra", ["weights/extra.bin", "not in its manifest"]),
    ("dotdot", ["unsafe member", "../../evil.txt"]),
    ("absolute", ["unsafe member", "/tmp/evil.txt"]),
    ("symlink", ["weights/link", "is a symlink"]),
    ("device", ["weights/dev", "is a device"]),
    ("missing", ["preview.gif", "not in the archive"]),
])
def test_a_tampered_or_unsafe_archive_is_refused_before_the_library_is_touched(archive, tmp_path, capsys, how, words):
    bad = _tamper(archive, tmp_path / f"{how}.tgz", how)
    lib = MotionLibrary(tmp_path / "b")
    result = run(capsys, "motions", "unpack", bad, "--library", lib.root)
    _refused(result, str(bad), "nothing was installed", *words)
    assert not lib.root.exists()
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()


def test_a_changed_byte_names_both_hashes(archive, tmp_path, capsys):
    bad = _tamper(archive, tmp_path / "bad.tgz", "byte")
    head = read_archive(archive).head
    expected = next(e["sha256"] for e in head["files"] if e["path"].endswith(".safetensors"))
    result = run(capsys, "motions", "unpack", bad, "--library", tmp_path / "b")
    found = result.err.split("has sha256 ")[1].split(",")[0]
    assert expected in result.err and len(found) == 64 and found != expected


def test_a_damaged_copy_or_a_newer_format_is_refused(archive, tmp_path, capsys):
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "damaged.tgz").write_bytes(bytes(data))
    (tmp_path / "cut.tgz").write_bytes(archive.read_bytes()[: len(data) // 2])
    for bad in ("damaged.tgz", "cut.tgz"):
        _refused(run(capsys, "motions", "unpack", tmp_path / bad, "--library", tmp_path / "b"), bad)
    members = _members(archive)
    head = json.loads(members[0][1])
    head["format_version"] = 2
    _write(tmp_path / "future.tgz", [(members[0][0], json.dumps(head).encode())] + members[1:])
    _refused(run(capsys, "motions", "unpack", tmp_path / "future.tgz", "--library", tmp_path / "b"),
             "format 2", "upgrade flashctl")
    assert not (tmp_path / "b").exists()


def test_an_existing_action_keeps_its_own_motion_toml(archive, tmp_path, capsys):
    lib = MotionLibrary(tmp_path / "b")
    assert run(capsys, "motions", "unpack", archive, "--library", lib.root).code == 0
    toml = lib.path("slide") / "motion.toml"
    toml.write_text(toml.read_text().replace("a square slides right", "a square slides to the right"))
    newer = _forge(archive, tmp_path / "new.tgz", "20990101T000000000000Z-eeee", "2099-01-01T00:00:00+00:00")
    result = run(capsys, "motions", "unpack", newer, "--library", lib.root)
    assert result.code == 0 and "kept the library's" in result.err
    assert "slides to the right" in toml.read_text()


# -- the per-action lock, as docs/reliability.md "Sharing motions" states it -----------------------

def _holder(root: Path, action: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root), action], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _installed(archive: Path, root: Path, capsys) -> MotionLibrary:
    lib = MotionLibrary(root)
    assert run(capsys, "motions", "unpack", archive, "--library", lib.root).code == 0
    return lib


@pytest.mark.parametrize("exists", [True, False])
def test_an_unpack_while_another_process_holds_the_action_is_refused(archive, tmp_path, capsys, exists):
    lib = _installed(archive, tmp_path / "b", capsys) if exists else MotionLibrary(tmp_path / "b")
    newer = _forge(archive, tmp_path / "new.tgz", "20990101T000000000000Z-eeee", "2099-01-01T00:00:00+00:00")
    proc = _holder(lib.root, "slide")
    try:
        before = _snapshot(lib.root)
        result = run(capsys, "motions", "unpack", newer, "--library", lib.root)
        _refused(result, f"motion 'slide' is busy: held by pid {proc.pid}")
        assert _snapshot(lib.root) == before
    finally:
        proc.communicate("\n", timeout=30)
    assert run(capsys, "motions", "unpack", newer, "--library", lib.root).code == 0  # free once the holder ends


def test_a_holder_killed_with_sigkill_leaves_no_stale_lock(archive, tmp_path, capsys):
    """The lock is the kernel's flock, not the file: a dead holder's leftover .lock and .pid block nobody."""
    lib = _installed(archive, tmp_path / "b", capsys)
    proc = _holder(lib.root, "slide")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert (lib.root / ".locks" / "slide.lock").exists() and (lib.root / ".locks" / "slide.pid").exists()
    newer = _forge(archive, tmp_path / "new.tgz", "20990101T000000000000Z-eeee", "2099-01-01T00:00:00+00:00")
    result = run(capsys, "motions", "unpack", newer, "--library", lib.root, "--json")
    assert result.code == 0 and json.loads(result.out)["outcome"] == "installed-current"


def test_the_busy_message_names_a_holder_on_another_machine(archive, tmp_path, capsys):
    lib = _installed(archive, tmp_path / "b", capsys)
    proc = _holder(lib.root, "slide")
    try:
        assert (lib.root / ".locks" / "slide.pid").read_text().split()[0] == str(proc.pid)
        (lib.root / ".locks" / "slide.pid").write_text(f"{proc.pid} render-02")  # as a holder elsewhere writes it
        newer = _forge(archive, tmp_path / "new.tgz", "20990101T000000000000Z-eeee", "2099-01-01T00:00:00+00:00")
        _refused(run(capsys, "motions", "unpack", newer, "--library", lib.root),
                 f"held by pid {proc.pid} on render-02")
    finally:
        proc.communicate("\n", timeout=30)


def test_a_filesystem_that_refuses_locks_is_one_line(archive, tmp_path, capsys, monkeypatch):
    """NFSv3 without lockd/statd answers flock with ENOLCK: flashctl stops, writes nothing, says where to look."""
    lib = _installed(archive, tmp_path / "b", capsys)
    before = _snapshot(lib.root)

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    newer = _forge(archive, tmp_path / "new.tgz", "20990101T000000000000Z-eeee", "2099-01-01T00:00:00+00:00")
    _refused(run(capsys, "motions", "unpack", newer, "--library", lib.root),
             "cannot lock motion 'slide'", "refused the lock", "lockd", "Sharing motions")
    assert _snapshot(lib.root) == before
