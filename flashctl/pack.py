"""Motion archives: one motion's current version packed for another site, verified in full before it is installed.

An archive (``ACTION-RUNID.flashmotion.tar.gz``) is a gzip'd tar whose members all sit under one folder,
``ACTION-RUNID/``::

    flashmotion.json   the manifest (always the first member): format, versions, action, run id, files
    motion.toml        the action's manifest (kept as the library's own when the action already exists)
    provenance.json    the version's record (its ``files`` hashes must agree with the archive's)
    preview.gif        when the version has one
    weights/...        the version's weights
    clips/...          the clips motion.toml lists, only when packed with ``clips=True``

Why a tar.gz and not a zip: tar is in every Unix toolbox (``tar -tzf`` lists it), it records each member's type
explicitly (so a symlink, hard link or device is seen and refused, never materialised), gzip's CRC catches a
truncated or damaged copy, and the stdlib reads it as a stream. Weights barely compress either way.

``unpack`` reads the archive twice: first it checks every member (types, paths, sizes, sha256s against the
manifest, the provenance's hashes, motion.toml) without touching the library; then, under the action's lock,
it writes the files into the library's staging folder (hashing them again) and installs them with one rename.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Iterator

from . import __version__, versions
from .errors import FlashctlError, ManifestError, MotionNotTrainedError
from .files import read_json, sha256_file, storage_errors
from .library import ACTION_NAME, MotionLibrary, new_run_id
from .manifest import MANIFEST_NAME, SHA256, is_safe_relative, load_manifest

FORMAT = "flashmotion"
FORMAT_VERSION = 1
SUFFIX = ".flashmotion.tar.gz"
MANIFEST = "flashmotion.json"
VERSION_FILES = ("provenance.json", "preview.gif")  # besides weights/: what a version contributes
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
RESERVED = {versions.CURRENT, versions.VERSIONS, ".cache", ".locks", ".staging", *versions.ITEMS, MANIFEST_NAME}
BLOCK = 1 << 20


class ArchiveError(FlashctlError):
    """A motion archive that cannot be written, or is refused on unpack (damaged, changed, unsafe, newer format)."""


@dataclass(frozen=True)
class PackResult:
    archive: str
    action: str
    run_id: str
    files: int
    bytes: int
    clips: bool


@dataclass(frozen=True)
class UnpackResult:
    archive: str
    action: str
    run_id: str
    outcome: str  # "created", "installed-current", "installed-superseded" or "already-present"
    version: str | None  # the folder under .versions/ that holds the archive's run
    current_run_id: str | None  # the run id of the current version afterwards
    replaced_run_id: str | None  # the current run before, when the archive's replaced it
    message: str
    notes: list[str] = field(default_factory=list)


# -- pack ----------------------------------------------------------------------------------------

def default_archive_name(action: str, run_id: str) -> str:
    return f"{action}-{run_id}{SUFFIX}"


def pack(library: MotionLibrary, action: str, output: Path | None = None, *, clips: bool = False,
         overwrite: bool = False) -> PackResult:
    """Write ``action``'s current version (and motion.toml; its clips with ``clips``) to one archive.

    ``output``: a file, a folder (the default name inside) or None (the default name in the current folder).
    An existing file is replaced only with ``overwrite``. The version is checked against its provenance first.
    """
    folder = library.require(action)
    if not library.is_trained(action):
        raise MotionNotTrainedError(f"motion '{action}' has no trained version to pack",
                                    hint=f"train it first: `flashctl train {action}`")
    version = library.version_dir(action)  # resolved once: a save meanwhile does not mix versions
    library.check_version(action, version)
    provenance = read_json(version / "provenance.json") or {}
    run_id = str(provenance.get("run_id") or version.name)
    if not RUN_ID.fullmatch(run_id):
        run_id = re.sub(r"[^A-Za-z0-9._-]", "_", run_id)[:128].lstrip("._-") or version.name
    files: list[tuple[str, Path]] = [(MANIFEST_NAME, folder / MANIFEST_NAME)]
    files += [(name, version / name) for name in VERSION_FILES if (version / name).is_file()]
    for path in sorted((version / "weights").rglob("*")):
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise ArchiveError(f"{path}: not a plain file; a motion's weights are plain files",
                               hint=f"check the version folder {version}, or train '{action}' again")
        if path.is_file():
            files.append((path.relative_to(version).as_posix(), path))
    if clips:
        manifest = library.manifest(action)
        drifts = library.clip_drifts(action, manifest)
        if drifts:
            listed = ", ".join(f"{d.file} ({d.problem})" for d in drifts)
            raise ArchiveError(f"motion '{action}': clips differ from motion.toml: {listed}",
                               hint=f"see `flashctl motions verify {action}`; restore them, or pack without --clips")
        files += [(clip.file, folder / clip.file) for clip in manifest.clips]
    top = f"{action}-{run_id}"
    entries = [{"path": rel, "sha256": sha256_file(path), "size": path.stat().st_size} for rel, path in files]
    head = {"format": FORMAT, "format_version": FORMAT_VERSION, "flashctl_version": __version__, "action": action,
            "run_id": run_id, "finished_at": provenance.get("finished_at"),
            "packed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "clips": clips, "files": entries}
    target = _output_path(output, default_archive_name(action, run_id))
    if target.exists() and not overwrite:
        raise ArchiveError(f"{target} already exists", hint="pass --overwrite to replace it, or another -o FILE")
    with storage_errors():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.urandom(4).hex()}")
        try:
            _write_tar(tmp, top, head, files, entries)
            _publish(tmp, target, overwrite)
        finally:
            tmp.unlink(missing_ok=True)
    return PackResult(str(target), action, run_id, len(entries), target.stat().st_size, clips)


def _output_path(output: Path | None, name: str) -> Path:
    if output is None:
        return Path(name)
    output = Path(output)
    return output / name if output.is_dir() else output


def _write_tar(path: Path, top: str, head: dict[str, Any], files: list[tuple[str, Path]],
               entries: list[dict[str, Any]]) -> None:
    now = int(time.time())
    with open(path, "wb") as raw:
        with tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
            data = json.dumps(head, indent=1).encode()
            tar.addfile(_info(f"{top}/{MANIFEST}", len(data), now), io.BytesIO(data))
            for (rel, source), entry in zip(files, entries):
                with open(source, "rb") as fh:
                    tar.addfile(_info(f"{top}/{rel}", entry["size"], int(source.stat().st_mtime)), fh)
        raw.flush()
        os.fsync(raw.fileno())


def _info(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o644
    return info


def _publish(tmp: Path, target: Path, overwrite: bool) -> None:
    """Rename ``tmp`` to ``target``; without ``overwrite`` never over an existing file (a hard link refuses that)."""
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise ArchiveError(f"{target} already exists", hint="pass --overwrite to replace it, or another -o FILE") from None
    except OSError:  # no hard links here (some network shares): check, then rename
        if target.exists():
            raise ArchiveError(f"{target} already exists",
                               hint="pass --overwrite to replace it, or another -o FILE") from None
        os.replace(tmp, target)


# -- reading and checking an archive -------------------------------------------------------------

@dataclass
class Archive:
    """A checked archive: its manifest, top folder, and the small files (motion.toml, provenance.json) in memory."""

    path: Path
    top: str
    head: dict[str, Any]
    expected: dict[str, tuple[str, int]]  # path -> (sha256, size)
    small: dict[str, bytes]

    @property
    def action(self) -> str:
        return self.head["action"]

    @property
    def run_id(self) -> str:
        return self.head["run_id"]

    @property
    def provenance(self) -> dict[str, Any]:
        return json.loads(self.small["provenance.json"])


def _refuse(path: Path, what: str, hint: str | None = None) -> ArchiveError:
    return ArchiveError(f"{path}: {what}; nothing was installed",
                        hint=hint or "copy the archive again from its source, or pack it again there with "
                                     "`flashctl motions pack ACTION`")


DAMAGED = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)  # not every OSError: a full disk is not the archive's


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """A truncated or corrupt stream, wherever it shows (a member's read included), as one ``ArchiveError``."""
    try:
        yield
    except DAMAGED as exc:
        raise _refuse(path, f"damaged archive ({type(exc).__name__}: {exc})") from None


def _open(path: Path) -> tarfile.TarFile:
    if not path.is_file():
        raise ArchiveError(f"{path}: no such archive", hint="pass the .flashmotion.tar.gz file `flashctl motions pack` wrote")
    try:
        return tarfile.open(path, mode="r:gz")
    except DAMAGED as exc:
        raise _refuse(path, f"not a flashmotion archive (a gzip'd tar): {exc}") from None
    except OSError as exc:
        raise ArchiveError(f"cannot read {path}: {exc.strerror or exc}", hint="check the file's permissions") from None


def _members(path: Path, tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The members, each checked for a safe name and type; a damaged stream is one ``ArchiveError``."""
    seen: set[str] = set()
    try:
        for member in tar:
            name = member.name
            if name.startswith("/") or "\\" in name or ".." in name.split("/") or not is_safe_relative(name.rstrip("/")):
                raise _refuse(path, f"unsafe member {name!r} (an absolute path or '..' would write outside the "
                                    f"library)", hint="do not install it; ask the sender to pack it again with flashctl")
            if not (member.isfile() or member.isdir()):
                kind = ("a symlink" if member.issym() else "a hard link" if member.islnk() else
                        "a device" if member.isdev() else "not a plain file")
                raise _refuse(path, f"member {name!r} is {kind}; flashctl archives hold only plain files",
                              hint="do not install it; ask the sender to pack it again with flashctl")
            if name in seen:
                raise _refuse(path, f"member {name!r} appears twice")
            seen.add(name)
            yield member
    except DAMAGED as exc:
        raise _refuse(path, f"damaged archive ({type(exc).__name__}: {exc})") from None


def _hash(stream: IO[bytes], sink: IO[bytes] | None = None) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for block in iter(lambda: stream.read(BLOCK), b""):
        digest.update(block)
        size += len(block)
        if sink is not None:
            sink.write(block)
    return digest.hexdigest(), size


def _check_head(path: Path, head: Any) -> tuple[dict[str, Any], dict[str, tuple[str, int]]]:
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise _refuse(path, f"{MANIFEST} is not a flashmotion manifest")
    version = head.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise _refuse(path, f"archive format {version!r} (by flashctl {head.get('flashctl_version')}); this flashctl "
                            f"{__version__} reads format {FORMAT_VERSION}", hint="upgrade flashctl to unpack it")
    action, run_id = head.get("action"), head.get("run_id")
    if not isinstance(action, str) or not ACTION_NAME.fullmatch(action):
        raise _refuse(path, f"{MANIFEST}: invalid action name {action!r}")
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise _refuse(path, f"{MANIFEST}: invalid run id {run_id!r}")
    expected: dict[str, tuple[str, int]] = {}
    for entry in head.get("files") if isinstance(head.get("files"), list) else [None]:
        rel = entry.get("path") if isinstance(entry, dict) else None
        sha, size = (entry.get("sha256"), entry.get("size")) if isinstance(entry, dict) else (None, None)
        if not (isinstance(rel, str) and is_safe_relative(rel) and isinstance(sha, str) and SHA256.fullmatch(sha)
                and isinstance(size, int) and size >= 0) or rel in expected or rel == MANIFEST:
            raise _refuse(path, f"{MANIFEST}: bad or repeated files entry {entry!r}")
        expected[rel] = (sha, size)
    for need in (MANIFEST_NAME, "provenance.json", "weights/config.json"):
        if need not in expected:
            raise _refuse(path, f"{MANIFEST} lists no {need}")
    return head, expected


def read_archive(path: Path) -> Archive:
    """Check every member of the archive at ``path`` against its manifest; write nothing. Raise ``ArchiveError``."""
    path = Path(path)
    with _reading(path), _open(path) as tar:
        members = _members(path, tar)
        first = next(members, None)
        if first is None or not first.isfile() or first.name.count("/") != 1 or not first.name.endswith("/" + MANIFEST):
            raise _refuse(path, f"the first member is not TOP/{MANIFEST}"
                                f" ({first.name if first is not None else 'empty archive'})")
        top = first.name.split("/")[0]
        if first.size > BLOCK:
            raise _refuse(path, f"{MANIFEST} is {first.size} bytes, too large for a manifest")
        try:
            head = json.loads(tar.extractfile(first).read())
        except ValueError as exc:
            raise _refuse(path, f"{MANIFEST} is not valid JSON ({exc})") from None
        head, expected = _check_head(path, head)
        if top != f"{head['action']}-{head['run_id']}":
            raise _refuse(path, f"the top folder {top!r} is not {head['action']}-{head['run_id']}")
        small: dict[str, bytes] = {}
        found: set[str] = set()
        for member in members:
            if member.isdir():
                if member.name.rstrip("/") != top and not member.name.startswith(top + "/"):
                    raise _refuse(path, f"member {member.name!r} is outside {top}/")
                continue
            rel = member.name[len(top) + 1:] if member.name.startswith(top + "/") else None
            if rel is None or rel not in expected:
                raise _refuse(path, f"member {member.name!r} is not in its manifest (an extra file)")
            sha, size = expected[rel]
            if member.size != size:
                raise _refuse(path, f"{rel} is {member.size} bytes, the manifest says {size}")
            stream = tar.extractfile(member)
            if rel in (MANIFEST_NAME, "provenance.json"):
                data = stream.read()
                small[rel] = data
                found_sha = hashlib.sha256(data).hexdigest()
            else:
                found_sha, _ = _hash(stream)
            if found_sha != sha:
                raise _refuse(path, f"{rel} has sha256 {found_sha}, the manifest says {sha}",
                              hint="the archive was changed or damaged since it was packed: copy it again from its "
                                   "source, or pack it again there with `flashctl motions pack ACTION`")
            found.add(rel)
    missing = sorted(set(expected) - found)
    if missing:
        raise _refuse(path, f"{missing[0]} is in the manifest but not in the archive"
                            + (f" ({len(missing) - 1} more)" if len(missing) > 1 else ""))
    archive = Archive(path, top, head, expected, small)
    _check_contents(archive)
    return archive


def _check_contents(archive: Archive) -> None:
    """provenance.json's run id and file hashes agree with the archive; motion.toml is valid and names the action."""
    path = archive.path
    try:
        provenance = archive.provenance
    except ValueError as exc:
        raise _refuse(path, f"provenance.json is not valid JSON ({exc})") from None
    if not isinstance(provenance, dict):
        raise _refuse(path, "provenance.json is not a JSON object")
    if provenance.get("run_id") not in (None, archive.run_id):
        raise _refuse(path, f"provenance.json is run {provenance.get('run_id')!r}, the manifest says {archive.run_id!r}")
    for rel, sha in (provenance.get("files") or {}).items():
        have = archive.expected.get(rel, (None,))[0]
        if have != sha:
            raise _refuse(path, f"provenance.json records {rel} with sha256 {sha}, the archive has "
                                f"{have or 'no such file'}")
    with tempfile.TemporaryDirectory() as tmp:
        toml = Path(tmp) / MANIFEST_NAME
        toml.write_bytes(archive.small[MANIFEST_NAME])
        try:
            manifest = load_manifest(toml)
        except ManifestError as exc:
            raise _refuse(path, f"motion.toml: {exc.message.replace(str(toml), '').lstrip(': ')}") from None
    if manifest.name != archive.action:
        raise _refuse(path, f"motion.toml names {manifest.name!r}, the manifest {archive.action!r}")
    clips = {clip.file for clip in manifest.clips}
    for rel in archive.expected:
        if rel == MANIFEST_NAME or rel in VERSION_FILES or rel.startswith("weights/"):
            continue
        if rel not in clips or rel.split("/")[0] in RESERVED or rel.startswith("."):
            raise _refuse(path, f"{rel} is neither part of the motion's version nor a clip its motion.toml lists")


# -- unpack --------------------------------------------------------------------------------------

def _when(provenance: dict[str, Any] | None) -> datetime | None:
    try:
        value = datetime.fromisoformat(str((provenance or {}).get("finished_at")))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def is_newer(incoming: dict[str, Any], current: dict[str, Any] | None) -> bool:
    """True when ``incoming`` finished after ``current`` (ties, or no times: the later run id); False when unsure."""
    if current is None:
        return True
    new, old = _when(incoming), _when(current)
    new_id, old_id = str(incoming.get("run_id") or ""), str(current.get("run_id") or "")
    if new is not None and old is not None and new != old:
        return new > old
    return bool(new_id and old_id) and new_id > old_id


def unpack(library: MotionLibrary, archive_path: Path, *, make_current: bool = False) -> UnpackResult:
    """Check the archive in full, then install its version under the action's lock (see the module's docstring).

    A run already in the library: nothing changes. The archive's run becomes current when the action is new or
    untrained, when it is newer than the current one (:func:`is_newer`), or with ``make_current``; otherwise it
    is kept as the newest superseded version and the current motion stays.
    """
    archive = read_archive(Path(archive_path))
    action, run_id = archive.action, archive.run_id
    name = str(archive_path)
    if not library.exists(action):
        with library.create(action) as staging:
            (staging / MANIFEST_NAME).write_bytes(archive.small[MANIFEST_NAME])
            incoming = staging / ".incoming"
            incoming.mkdir()
            _extract(archive, incoming, staging)
            version = new_run_id()
            versions.commit(staging, incoming, version)
        listed = len(load_manifest(library.path(action) / MANIFEST_NAME).clips)
        notes = [f"the archive holds no clips: `flashctl motions verify {action}` will list the {listed} clips "
                 "motion.toml names as missing (pack with --clips to ship them)"] if listed and not archive.head.get("clips") else []
        return UnpackResult(name, action, run_id, "created", version, run_id, None,
                            f"unpacked '{action}' (run {run_id}) into {library.root}: a new action, current", notes)
    notes = []
    if (library.path(action) / MANIFEST_NAME).read_bytes() != archive.small[MANIFEST_NAME]:
        notes.append(f"kept the library's {library.path(action) / MANIFEST_NAME} (the archive's differs; flashctl "
                     "never rewrites a motion.toml)")
    if any(rel != MANIFEST_NAME and rel not in VERSION_FILES and not rel.startswith("weights/") for rel in archive.expected):
        notes.append(f"the archive's clips were not copied: '{action}' already has its own clips")
    with library.lock(action):
        current = library.provenance(action) if library.is_trained(action) else None
        current_id = (current or {}).get("run_id")
        present = library.find_run(action, run_id)
        if present is not None:
            where = "the current version" if present == library.version_dir(action) else f"{present.name}, not current"
            return UnpackResult(name, action, run_id, "already-present", present.name, current_id, None,
                                f"'{action}' run {run_id} is already in {library.root} ({where}); nothing changed",
                                notes)
        newer = is_newer(archive.provenance, current)
        if make_current or newer:
            with library.stage(action) as staging:
                _extract(archive, staging)
                version = staging.name.split(".", 1)[1]
            why = "" if current is None else " (--make-current)" if not newer else " (newer)"
            replaced = f"; it replaces run {current_id}" if current is not None else ""
            return UnpackResult(name, action, run_id, "installed-current", version, run_id, current_id,
                                f"unpacked '{action}' run {run_id} as the current version{why}{replaced}", notes)
        with library.stage_superseded(action) as staging:
            _extract(archive, staging)
        version = library.find_run(action, run_id)
        return UnpackResult(
            name, action, run_id, "installed-superseded", version.name if version else None, current_id, None,
            f"kept the current '{action}' (run {current_id}, finished {(current or {}).get('finished_at')}), which is "
            f"newer than the archive's (finished {archive.provenance.get('finished_at')}); installed run {run_id} as a "
            f"superseded version; pass --make-current to make it current", notes)


def _extract(archive: Archive, version: Path, action_folder: Path | None = None) -> None:
    """Write the archive's version files into ``version`` (and, with ``action_folder``, its clips), hashing again."""
    with _reading(archive.path), _open(archive.path) as tar:
        members = _members(archive.path, tar)
        next(members)
        for member in members:
            if member.isdir():
                continue
            rel = member.name[len(archive.top) + 1:]
            if rel == MANIFEST_NAME:
                continue
            is_clip = rel not in VERSION_FILES and not rel.startswith("weights/")
            if is_clip and action_folder is None:
                continue
            target = (action_folder if is_clip else version) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") as sink:
                sha, size = _hash(tar.extractfile(member), sink)
                sink.flush()
                os.fsync(sink.fileno())
            if (sha, size) != archive.expected.get(rel):
                raise _refuse(archive.path, f"{rel} changed while it was being installed (sha256 {sha})")
