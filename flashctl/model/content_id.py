"""Content ids of weight folders: which weights a base or a motion adapter *is*, whatever its path.

A folder's id hashes, for every safetensors file a loader would read (sorted by relative path):
the relative path, the file size, the JSON header (every tensor's name, dtype, shape and offsets)
and a sample of the data (the first and last :data:`SAMPLE` bytes of every tensor). It reads a few
KB per tensor, never the whole file: a 4 GB folder hashes in well under a second (measured in
docs/performance.md), so a moved, copied or symlinked folder gives the same id and a different
checkpoint of the same architecture (same header, other values) gives another. It identifies
weights, it does not authenticate them: a file edited only in the middle of a tensor keeps its id
(:func:`full_content_id` hashes every byte, for when that matters).

Per-file digests are cached in memory for the process, keyed by the resolved path, size and
mtime_ns; nothing is written to disk.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Iterable

SCHEME = b"flashctl-content-id/1"
SAMPLE = 64  # bytes read at each end of every tensor
ID_CHARS = 16  # hex characters of the id that geometry records keep
MAX_HEADER = 100_000_000  # the safetensors format's own limit

_cache: dict[tuple[str, int, int, bool], bytes] = {}


class ContentIdError(ValueError):
    """A file that is not a readable safetensors file."""


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files a diffusers/transformers loader reads from ``folder`` (recursively).

    Variant copies (``model.fp16.safetensors``, ``diffusion_pytorch_model.non_ema.safetensors``) are left out
    when a plain file sits beside them, so a folder with extra variants keeps the id of one without.
    """
    files = sorted(p for p in Path(folder).rglob("*.safetensors") if p.is_file())
    plain = {p.parent for p in files if "." not in p.stem}
    return [p for p in files if "." not in p.stem or p.parent not in plain]


def _header(handle, path: Path, size: int) -> bytes:
    raw = handle.read(8)
    if len(raw) < 8:
        raise ContentIdError(f"{path} is not a safetensors file (only {size} bytes)")
    (length,) = struct.unpack("<Q", raw)
    if length > min(MAX_HEADER, size - 8):
        raise ContentIdError(f"{path} is not a safetensors file (header length {length} for {size} bytes)")
    return handle.read(length)


def file_digest(path: Path, *, full: bool = False) -> bytes:
    """sha256 of one safetensors file's size + header + tensor samples (``full``: of every byte), cached."""
    path = Path(path)
    real = path.resolve()
    stat = real.stat()
    key = (str(real), stat.st_size, stat.st_mtime_ns, full)
    if key in _cache:
        return _cache[key]
    digest = hashlib.sha256()
    with open(real, "rb") as handle:
        if full:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
        else:
            header = _header(handle, path, stat.st_size)
            digest.update(struct.pack("<Q", stat.st_size) + header)
            try:
                tensors = json.loads(header)
            except ValueError:
                raise ContentIdError(f"{path} has an unreadable safetensors header") from None
            start = 8 + len(header)
            spans = sorted(tuple(t["data_offsets"]) for k, t in tensors.items() if k != "__metadata__")
            for begin, end in spans:
                for at, n in ((begin, min(SAMPLE, end - begin)), (max(begin, end - SAMPLE), min(SAMPLE, end - begin))):
                    handle.seek(start + at)
                    digest.update(handle.read(n))
    _cache[key] = digest.digest()
    return _cache[key]


def content_id(folders: Iterable[Path] | Path, root: Path | None = None, *, full: bool = False) -> str | None:
    """The id of the weights in ``folders`` (one folder or several, e.g. a base's unet/ vae/ text_encoder/);
    ``None`` when they hold no safetensors file. Paths enter the hash relative to ``root`` (default: each folder),
    so the same files under another path give the same id."""
    folders = [Path(folders)] if isinstance(folders, (str, Path)) else [Path(f) for f in folders]
    digest = hashlib.sha256(SCHEME + (b"/full" if full else b""))
    found = False
    for folder in folders:
        base = Path(root) if root is not None else folder
        for file in weight_files(folder):
            found = True
            digest.update(file.relative_to(base).as_posix().encode() + b"\0" + file_digest(file, full=full))
    return digest.hexdigest()[:ID_CHARS] if found else None


def full_content_id(folders: Iterable[Path] | Path, root: Path | None = None) -> str | None:
    """Like :func:`content_id` over every byte of every file (seconds per GB; for provenance, not for loading)."""
    return content_id(folders, root, full=True)


def clear_cache() -> None:
    _cache.clear()


def main(argv: list[str] | None = None) -> None:
    """``python -m flashctl.model.content_id FOLDER [--full] [--cold]``: the folder's id and how long it took.

    ``--cold`` first drops the folder's files from the page cache (``posix_fadvise DONTNEED``, those files only),
    so the time includes reading them from disk.
    """
    import argparse
    import os
    import time

    parser = argparse.ArgumentParser(prog="python -m flashctl.model.content_id")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--full", action="store_true", help="sha256 of every byte instead of headers + samples")
    parser.add_argument("--cold", action="store_true", help="evict the files from the page cache first")
    args = parser.parse_args(argv)
    files = weight_files(args.folder)
    if args.cold:
        for file in files:
            fd = os.open(file, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
    size = sum(f.stat().st_size for f in files)
    t0 = time.perf_counter()
    found = content_id(args.folder, full=args.full)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    content_id(args.folder, full=args.full)
    again = time.perf_counter() - t0
    print(f"{found}  {len(files)} files, {size / 1e9:.2f} GB, {'full sha256' if args.full else 'headers + samples'}"
          f"{' (cold)' if args.cold else ''}: {first:.3f} s; again in this process (cached): {again * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
