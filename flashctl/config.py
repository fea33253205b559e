"""flashctl.toml -> frozen pydantic models, with CLI overrides and readable errors.

Which file (first found wins, as ruff does): ``--config PATH``, then ``$FLASHCTL_CONFIG``, then the
nearest ``flashctl.toml`` in the current folder or any folder above it, then the user-level
``flashctl.toml`` (:func:`user_config_path`), then the built-in defaults. Precedence of values: model
defaults < that file < ``--set section.key=value`` overrides. Phase two
(:func:`validate_components`) checks each chosen component's own options model once the
plugin registry exists.
"""

from __future__ import annotations

import copy
import difflib
import re
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError
from .validation import render_validation_error

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .config_discovery import CONFIG_ENV, CONFIG_NAME, discover_config
# The demo motions beside the package in a source checkout (an editable install). They are not package
# data (a motion's `current` link does not survive a wheel), so an installed wheel has none.
SHIPPED_LIBRARY = Path(__file__).resolve().parent.parent / "motions"
# Component options the embedded default needs: the tiny backbone with the base shipped in its package.
BUILTIN_OPTIONS: dict[str, dict[str, dict[str, Any]]] = {"backbone": {"animatediff": {
    "preset": "tiny", "base": "shipped", "lora_feed_forward": True}}}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # nan/inf is never a setting


class LibrarySection(Section):
    path: str = Field("motions", description="motion library folder, relative to this config file (with no config "
                                             "file: the current folder). When no config sets it, `animate` of an "
                                             "action it lacks reads the demo motions shipped beside the package "
                                             "(source checkouts only: they are not in the wheel)")


class ModelSection(Section):
    backbone: str = Field("animatediff", description="video diffusion backbone (`flashctl plugins --kind backbone`)")
    decoder: str = Field("vae", description="latent decoder (`flashctl plugins --kind decoder`); \"detail-enhance\" "
                                            "= FLASH's Detail Enhancement Decoder (with train.detail_decoder)")


class PrepareSection(Section):
    frames: int = Field(16, ge=2, le=128, description="frames per normalised clip")
    fps: float = Field(8.0, gt=0, le=120, description="frame rate clips are resampled to")
    size: int = Field(64, ge=16, le=2048, multiple_of=8, description="square side in pixels")
    start: float = Field(0.0, ge=0, description="seconds trimmed from the start of every clip")
    max_clips: int = Field(16, ge=1, description="more clips than this is a warning")


MOVED_TO_MAM = {"motion_align": "motion_align", "correspondence_align": "correspondence_align",
                "donor_grad": "donor_grad", "lambda_motion": "lambda_motion", "lambda_corr": "lambda_corr",
                "mam_layers": "layers"}  # old [train] keys -> their [train.mam] names


class MamSection(Section):
    """``[train.mam]``: the Motion Alignment Module. It aligns the augmented copy of each clip with its original
    (``train.strong_augment`` makes the copies); with both alignments off, the copies are plain extra examples."""

    motion_align: bool = Field(False, description="align motion in temporal attention: the augmented copy keeps its "
                                                  "appearance and takes the original's motion")
    correspondence_align: bool = Field(False, description="align correspondences: the original's cross-frame "
                                                          "attention (wan: its 3-D attn1) aggregates the augmented "
                                                          "copy's values")
    donor_grad: bool = Field(True, description="gradients flow through the original clip's donated features")
    reference_frame: Literal["align", "keep"] = Field(
        "align", description="motion alignment: frame 0 (the clean reference) is split into static and motion "
                             "parts like the rest (align, METHOD.md) or stays the copy's own, the split running "
                             "over the noised frames (keep)")
    lambda_motion: float = Field(1.0, ge=0, description="weight of the motion-aligned loss")
    lambda_corr: float = Field(1.0, ge=0, description="weight of the correspondence-aligned loss")
    layers: str | list[str] | None = Field(None, description="regex (or list) searched in attention-processor names; "
                                                             "only matching layers are aligned (None = all)")

    @field_validator("layers")
    @classmethod
    def _compiles(cls, value: str | list[str] | None) -> str | list[str] | None:
        for pattern in [value] if isinstance(value, str) else value or []:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"bad regex {pattern!r}: {exc}") from None
        return value

    @property
    def aligns(self) -> bool:
        return self.motion_align or self.correspondence_align

    @property
    def augmented_weight(self) -> float:
        """Weight of L(x~): lambda_m + lambda_c over the alignments that are on; 1 when none is (#2)."""
        if not self.aligns:
            return 1.0
        return self.lambda_motion * self.motion_align + self.lambda_corr * self.correspondence_align

    def patterns(self) -> list[str] | None:
        return [self.layers] if isinstance(self.layers, str) else self.layers

    def selects(self, name: str) -> bool:
        patterns = self.patterns()
        return patterns is None or any(re.search(p, name) for p in patterns)


class TrainSection(Section):
    """``[train]``. The defaults are the project recipe for actions the base never saw (docs/results.md): plain
    fine-tuning (ablation row #1), 600 steps at lr 2e-3. Full FLASH (#6) = ``strong_augment``, both
    ``[train.mam]`` alignments and ``detail_decoder`` (with ``model.decoder = "detail-enhance"``)."""

    steps: int = Field(600, ge=1, description="optimizer steps of the motion LoRA (the decoder fit and the preview "
                                              "come after them)")
    batch_size: int = Field(1, ge=1, description="clips per step")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    lr: float = Field(2e-3, gt=0, le=1, description="AdamW learning rate")
    warmup_steps: int = Field(0, ge=0, description="linear learning-rate warm-up")
    seed: int = Field(0, description="seed for noise, timesteps and augmentations")
    # low-memory settings (docs/performance.md): "auto" = on for real-weight presets (sd15, svd), off for tiny
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = Field("auto", description="accelerate mixed precision; "
                                                                   "auto = bf16 for real-weight presets, no for tiny")
    gradient_checkpointing: bool | Literal["auto"] = Field("auto", description="recompute activations in backward, "
                                                           "motion modules included (less memory, ~30% slower)")
    frozen_dtype: Literal["auto", "float32", "mixed"] = Field("auto", description="mixed: the frozen U-Net and "
                                                              "prompt/image encoder in the mixed-precision dtype (LoRA "
                                                              "stays float32); auto = mixed when mixed precision is on")
    augment_bank: int | Literal["auto"] = Field("auto", description="with strong_augment: augmented copies per clip, "
                                                "drawn and VAE-encoded once before step 1 (no VAE in the steps); 0 = "
                                                "a fresh copy encoded every step; auto = 8 for real-weight presets, 0")
    checkpoint_every: int = Field(0, ge=0, description="save a resumable checkpoint every N steps; 0 = none")
    lora_rank: int = Field(8, ge=1, description="LoRA rank on temporal and cross-frame attention")
    lora_alpha: float = Field(8.0, gt=0, description="LoRA scale numerator")
    lora_extra_targets: list[str] = Field([], description="module-name regexes that also get LoRA, besides the "
                                                          "backbone's temporal and cross-frame-query targets")
    strong_augment: bool = Field(False, description="also train on strongly re-coloured copies (ablation #2+)")
    augmentations: list[str] = Field(["color-jitter", "hue-rotate", "channel-shuffle", "grayscale", "invert"],
                                     description="motion-preserving augmentations drawn from, one per clip")
    detail_decoder: bool = Field(False, description="fit the Detail Enhancement Decoder (ablation #6)")
    trackers: list[str] = Field([], description="experiment trackers to log to (`flashctl plugins --kind tracker`)")
    mam: MamSection = Field(MamSection(), description="the Motion Alignment Module ([train.mam])")

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data: Any) -> Any:
        moved = [k for k in MOVED_TO_MAM if isinstance(data, dict) and k in data]
        if moved:
            key = moved[0]
            raise ValueError(f"'{key}' moved to [train.mam]: write it as train.mam.{MOVED_TO_MAM[key]}"
                             f" (in TOML: a [train.mam] table holding {MOVED_TO_MAM[key]})")
        return data

    @field_validator("augment_bank")
    @classmethod
    def _bank_size(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 0:
            raise ValueError(f"must be 0 (fresh copies every step), a positive count or \"auto\", got {value}")
        return value

    @model_validator(mode="after")
    def _frozen_dtype_needs_autocast(self) -> TrainSection:
        if self.frozen_dtype == "mixed" and self.mixed_precision == "no":
            raise ValueError('frozen_dtype = "mixed" needs train.mixed_precision = "bf16" or "fp16" (the frozen weights '
                             'run under its autocast); or set train.frozen_dtype = "float32"')
        return self

    @model_validator(mode="after")
    def _mam_is_possible(self) -> TrainSection:
        mam = self.mam
        on = [f"train.mam.{k}" for k in ("motion_align", "correspondence_align") if getattr(mam, k)]
        if on and not self.strong_augment:
            verb = "need" if len(on) > 1 else "needs"
            raise ValueError(f"{' and '.join(on)} = true {verb} train.strong_augment = true (MAM aligns the "
                             "augmented copy of each clip); or turn the alignments off for plain fine-tuning (#1)")
        if on and mam.augmented_weight == 0:
            lambdas = [f"train.mam.{k}" for k, flag in (("lambda_motion", mam.motion_align),
                                                         ("lambda_corr", mam.correspondence_align)) if flag]
            raise ValueError(f"{' and '.join(lambdas)} = 0: the aligned branch ({', '.join(on)}) would get no weight; "
                             "raise the lambda or turn the alignment off")
        return self

    @property
    def ablation_row(self) -> str:
        """The METHOD.md ablation row ``#1``..``#6`` these switches train, or ``custom``."""
        switches = (self.strong_augment, self.mam.motion_align, self.mam.correspondence_align, self.detail_decoder)
        rows = {(False, False, False, False): "#1", (True, False, False, False): "#2",
                (True, True, False, False): "#3", (True, False, True, False): "#4",
                (True, True, True, False): "#5", (True, True, True, True): "#6"}
        return rows.get(switches, "custom")


class AnimateSection(Section):
    steps: int = Field(20, ge=1, description="denoising steps")
    scheduler: Literal["ddim", "euler", "dpm++", "unipc"] = Field(
        "ddim", description="diffusers sampler: ddim, euler, dpm++ (diffusion backbones); euler, unipc (flow matching: wan)")
    guidance_scale: float = Field(4.0, ge=0, description="classifier-free guidance on the action prompt; 1 = off")
    negative_prompt: str = Field("", description="used when guidance_scale > 1")
    seed: int = Field(0, description="same seed, same video")
    start: Literal["noise", "reference"] = Field("reference", description="later frames start from pure noise, or "
                                                 "from the reference noised to the first step (as training saw them)")
    strength: float = Field(1.0, ge=0, le=4, allow_inf_nan=False,
                            description="motion LoRA scale: 1 = as trained, 0 = the base alone (no motion)")
    formats: list[str] = Field(["mp4"], description="output formats (`flashctl plugins --kind video_format`)")
    contact_sheet: bool = Field(True, description="also write a PNG grid of the frames")
    anchor: bool = Field(True, description="add each frame's decoded change from frame 0 to the exact input image: "
                                            "frame 0 is the image, still regions keep its pixels")
    anchor_tolerance: float = Field(0.2, ge=0, le=2, description="per-pixel change from frame 0 (in [-1, 1] units) "
                                    "up to which a pixel counts as still and is anchored; moving pixels keep the "
                                    "decoded frame (0 = anchor every pixel, which pins a ghost of the first pose)")
    out: str = Field("outputs", description="output folder for animate, relative to this config file")


class EvalSection(Section):
    metrics: list[str] = Field(["motion-track", "transition", "smoothness", "motion-fidelity"],
                               description="metric plugins to score with (the defaults pass experiments/metric_sanity.py: "
                                           "a frozen or noisy video cannot beat a real motion)")
    out: str = Field("eval", description="report folder name inside the motion")
    noise: Literal["shared", "per-sample"] = Field(
        "shared", description="sampling noise of each reference: shared = animate.seed for all (the set's mean follows "
                              "one noise draw), per-sample = a seed drawn from (animate.seed, the reference's "
                              "index): the mean averages over draws that no other reference or seed shares")


class RuntimeSection(Section):
    device: str = Field("cpu", description="torch device: cpu, cuda, cuda:1, mps")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="weights dtype at inference")
    offline: bool = Field(True, description="never go online for weights")
    threads: int = Field(1, ge=0, description="torch CPU threads; 0 = torch's default (tiny models: 1 is steady, "
                                              "2 on a busy 2-core box run ~10x slower)")
    attention: Literal["sdpa", "eager"] = Field("sdpa", description="attention kernel: PyTorch SDPA or plain matmul")
    vae_slicing: bool = Field(True, description="decode a few frames at a time at inference (lower peak memory)")
    vae_tiling: bool = Field(False, description="decode large frames in tiles (lower peak memory, slower)")
    cpu_offload: bool = Field(False, description="keep models on the CPU, move each to the GPU only while it runs")
    compile: bool = Field(False, description="torch.compile the denoiser (opt-in; slow first call)")


class PluginsSection(Section):
    disable: list[str] = Field([], description="plugin names to skip")
    paths: list[str] = Field([], description="project-local plugin files or folders")


class FlashConfig(Section):
    schema_version: int = 1
    library: LibrarySection = LibrarySection()
    model: ModelSection = ModelSection()
    prepare: PrepareSection = PrepareSection()
    train: TrainSection = TrainSection()
    animate: AnimateSection = AnimateSection()
    eval: EvalSection = EvalSection()
    runtime: RuntimeSection = RuntimeSection()
    plugins: PluginsSection = PluginsSection()
    # [options.<kind>.<name>]: each component's own settings, checked in phase two. A component whose table
    # the config does not write gets its built-in one (BUILTIN_OPTIONS); a table written replaces it whole.
    options: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=lambda: copy.deepcopy(BUILTIN_OPTIONS))

    # where the config came from; library paths are relative to its folder
    source: str = Field("<defaults>", exclude=True)
    # how it was found: --config, FLASHCTL_CONFIG, project (walking up), user, defaults
    found_by: str = Field("defaults", exclude=True)

    def root(self) -> Path:
        return Path(self.source).parent if self.source != "<defaults>" else Path.cwd()

    def project_path(self, raw: str) -> Path:
        """A path from the config: relative ones are relative to the config file's folder."""
        p = Path(raw).expanduser()
        return (p if p.is_absolute() else self.root() / p).resolve()

    def library_path(self) -> Path:
        return self.project_path(self.library.path)

    def component_options(self, kind: str, name: str) -> dict[str, Any]:
        return self.options.get(kind, {}).get(name, {})

    @field_validator("options", mode="before")
    @classmethod
    def _builtin_options(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value  # the type check names it
        merged = copy.deepcopy(BUILTIN_OPTIONS)
        for kind, tables in value.items():
            merged[kind] = {**merged.get(kind, {}), **tables} if isinstance(tables, dict) else tables
        return merged

    def fallback_library(self) -> Path | None:
        """The shipped demo motions (:data:`SHIPPED_LIBRARY`), to read from when no config sets
        ``library.path`` and the default library lacks an action; None when there is none to fall back to."""
        if "path" in self.library.model_fields_set or not SHIPPED_LIBRARY.is_dir():
            return None
        shipped = SHIPPED_LIBRARY.resolve()
        return None if shipped == self.library_path() else shipped


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; a syntax error names the file, line and column."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found", hint="pass --config PATH or create flashctl.toml") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder", hint=f"pass the file: {path / CONFIG_NAME}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror})",
                          hint="check its permissions, or pass another --config PATH") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})",
                          hint="save the file as UTF-8 (TOML files must be UTF-8)") from None
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        line, col = found.groups() if found else ("?", "?")
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc)) or "syntax error"
        raise ConfigError(f"{path}:{line}:{col}: malformed TOML: {msg}", hint="fix the syntax at that line") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.steps=50`` -> (["train", "steps"], 50). Values are TOML; bare words are strings."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE", hint="for example --set train.steps=50")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return [p.strip() for p in key.split(".")], value


def _merge(base: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        base = base.setdefault(part, {})
        if not isinstance(base, dict):
            raise ConfigError(f"--set {'.'.join(path)}: '{part}' is not a table", hint="check the key")
    base[path[-1]] = value


def load_config(path: Path | str | None = None, overrides: list[str] = ()) -> FlashConfig:
    """Read ``path`` (or the discovered config, see :func:`discover_config`) and apply ``--set`` overrides."""
    path, found_by = discover_config(path)
    try:
        data: dict[str, Any] = read_toml(Path(path)) if path is not None else {}
    except ConfigError as exc:
        if found_by != CONFIG_ENV:
            raise
        raise ConfigError(exc.message.replace(str(path), f"{path} (from ${CONFIG_ENV})", 1),
                          hint=f"{exc.hint}, or unset {CONFIG_ENV}") from None
    overridden = set()
    for item in overrides:
        keys, value = parse_override(item)
        _merge(data, keys, value)
        overridden.add(".".join(keys))
    try:
        return FlashConfig.model_validate({**data, "source": str(Path(path).resolve()) if path else "<defaults>",
                                           "found_by": found_by})
    except ValidationError as exc:
        bad = ".".join(str(p) for p in exc.errors()[0]["loc"])
        where = "--set" if bad in overridden or path is None else str(path)
        raise ConfigError(*render_validation_error(exc, where, FlashConfig)) from None


def _leaves(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables -> {"section.key": value} (a table that is empty is a leaf)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_leaves(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def value_sources(config: FlashConfig, overrides: list[str] = ()) -> dict[str, str]:
    """``"section.key"`` -> what set it: ``--set``, the config file's path, or ``default``."""
    from_file = set(_leaves(read_toml(Path(config.source)))) if config.source != "<defaults>" else set()
    from_set = {".".join(parse_override(item)[0]) for item in overrides}
    sources = {}
    for dotted in _leaves(config_to_dict(config)):
        parts = dotted.split(".")
        prefixes = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        sources[dotted] = ("--set" if prefixes & from_set else config.source if prefixes & from_file else "default")
    return sources


def config_to_dict(config: FlashConfig) -> dict[str, Any]:
    """The resolved config as plain data (for provenance, ``config show``)."""
    return config.model_dump(mode="json")


def validate_components(config: FlashConfig, registry: Any) -> dict[tuple[str, str], Any]:
    """Phase two: every chosen component exists and its options validate. Returns parsed options."""
    where = config.source if config.source != "<defaults>" else "config"
    chosen: list[tuple[str, str, str]] = [
        ("backbone", config.model.backbone, "model.backbone"),
        ("decoder", config.model.decoder, "model.decoder"),
    ]
    if config.train.strong_augment:
        chosen += [("augmentation", n, f"train.augmentations[{i}]") for i, n in enumerate(config.train.augmentations)]
    chosen += [("metric", n, f"eval.metrics[{i}]") for i, n in enumerate(config.eval.metrics)]
    chosen += [("video_format", n, f"animate.formats[{i}]") for i, n in enumerate(config.animate.formats)]
    for kind, names in config.options.items():
        if kind not in registry_kinds():
            close = difflib.get_close_matches(kind, registry_kinds(), n=1)
            raise ConfigError(f"{where}: options.{kind}: unknown component kind",
                              hint=f"did you mean '{close[0]}'?" if close else f"kinds: {', '.join(registry_kinds())}")
        for name in names:
            if name not in registry.names(kind) and names[name] == BUILTIN_OPTIONS.get(kind, {}).get(name):
                continue  # a built-in table for a component whose plugin is not loaded: unused, not a typo
            registry.get(kind, name, where=f"{where}: options.{kind}.{name}")
    parsed = {}
    for kind, name, key in chosen:
        spec = registry.get(kind, name, where=f"{where}: {key}")
        parsed[(kind, name)] = spec.validate_options(config.component_options(kind, name), where,
                                                     f"options.{kind}.{name}")
    return parsed


def registry_kinds() -> list[str]:
    from .registry import KINDS

    return list(KINDS)
