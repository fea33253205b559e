"""motion.toml: the human-written manifest of one action, and the small TOML writer for it.

flashctl writes a motion.toml once, when ``prepare`` creates an action; after that the file is
the user's and flashctl only reads it. Errors name the file and the key (``clips[2].sha256``).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .config import TrainSection, read_toml
from .errors import ConfigError, ManifestError
from .validation import render_validation_error

MANIFEST_NAME = "motion.toml"
SHA256 = re.compile(r"[0-9a-f]{64}")

HEADER = """\
# motion.toml: written once by `flashctl prepare`; it is yours now and flashctl never rewrites it.
# Fill in license and consent for every clip. A clip's sha256 must match its file (sha256sum FILE).
# Keys under [train] override flashctl.toml's [train] for this action only.
"""


def is_safe_relative(path: str) -> bool:
    """True for a relative POSIX path that stays inside its folder (no '..', no absolute, no '\\')."""
    parts = PurePosixPath(path).parts
    return bool(path) and "\\" not in path and not PurePosixPath(path).is_absolute() and ".." not in parts


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClipEntry(_Model):
    file: str = Field(description="path relative to the action folder, e.g. clips/kick_01.mp4")
    sha256: str
    source: str = ""
    license: str = ""
    consent: str = ""
    note: str = ""

    @field_validator("file")
    @classmethod
    def _inside(cls, value: str) -> str:
        if not is_safe_relative(value):
            raise ValueError("must be a relative path inside the action folder, e.g. clips/kick_01.mp4")
        return value

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not SHA256.fullmatch(value):
            raise ValueError("must be 64 lowercase hex digits (the output of sha256sum FILE)")
        return value


class MotionManifest(_Model):
    schema_version: Literal[1] = 1
    name: str
    prompt: str = Field(min_length=1)
    description: str = ""
    tags: list[str] = []
    clips: list[ClipEntry] = []
    train: dict[str, Any] = {}


def _invalid(path: Path, exc: ValidationError, model: type[BaseModel], prefix: str = "") -> ManifestError:
    return ManifestError(*render_validation_error(exc, str(path), model, prefix, hint="fix the value in motion.toml"))


def load_manifest(path: Path) -> MotionManifest:
    """Parse and validate ``path``; [train] keys are checked against flashctl.toml's [train] schema."""
    try:
        data = read_toml(Path(path))
    except ConfigError as exc:  # a syntax error, as FILE:LINE:COL
        raise ManifestError(exc.message, hint=exc.hint) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read it ({exc.__class__.__name__}: {exc})",
                            hint="check that the file is readable UTF-8 text") from None
    try:
        manifest = MotionManifest.model_validate(data)
    except ValidationError as exc:
        raise _invalid(path, exc, MotionManifest) from None
    try:
        TrainSection.model_validate(manifest.train)
    except ValidationError as exc:
        raise _invalid(path, exc, TrainSection, prefix="train") from None
    return manifest


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _value(key)


def _value(value: Any) -> str:
    """One TOML value (inline): strings, numbers, booleans, lists and tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):  # JSON escapes are valid TOML basic-string escapes, DEL aside
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(str(k))} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def dumps_manifest(manifest: MotionManifest) -> str:
    """The manifest as TOML text with a header comment; ``load_manifest`` reads it back equal."""
    lines = [HEADER.rstrip("\n")]
    top = ("schema_version", "name", "prompt", "description", "tags")
    lines += [f"{k} = {_value(getattr(manifest, k))}" for k in top]
    if manifest.train:
        lines += ["", "[train]"] + [f"{_key(k)} = {_value(v)}" for k, v in manifest.train.items()]
    for clip in manifest.clips:
        lines += ["", "[[clips]]"] + [f"{k} = {_value(v)}" for k, v in clip.model_dump().items()]
    return "\n".join(lines) + "\n"
