"""A motion's files on disk (``weights/``), read and written by :class:`~flashctl.model.motion_model.MotionModel`.

``weights/config.json`` says exactly how to rebuild the modules (format version, backbone name,
resolved options, geometry, clip geometry, LoRA config, objective); ``weights/lora.safetensors``
holds the LoRA tensors only; ``weights/decoder.safetensors`` the fitted decoder layers, if any.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import IncompatibleMotionError, OutputPathError, WeightsFileError, WeightsNotFoundError
from ..files import atomic_path, sha256_file

CONFIG_FILE = "config.json"
LORA_FILE = "lora.safetensors"
DECODER_FILE = "decoder.safetensors"
FORMAT = 1  # weights/config.json layout; a newer one is refused, an older one needs a retrain
# what a motion's LoRA depends on; any difference means it cannot be loaded
GEOMETRY_KEYS = ("backbone", "preset", "base", "base_config_sha256", "latent_channels", "downsample", "target")
# content ids (flashctl.model.content_id) -> what they name and the text key they replace; compared only when both
# the motion and the config have one (motions saved before content ids keep matching on the base's text)
CONTENT_KEYS = {"base_content_id": ("base", "base"), "adapter_content_id": ("motion adapter", None)}
DIFFUSERS_COMPONENT = "unet"  # the denoiser's pipeline component when a motion's config.json names none (older motions)
COMFYUI_PREFIX = "lora_unet_"  # ComfyUI's (kohya-ss) U-Net LoRA names: comfy/lora.py model_lora_keys_unet
COMFYUI_SUFFIX = {"lora_A.weight": "lora_down.weight", "lora_B.weight": "lora_up.weight"}  # peft -> ComfyUI


def _describe(geometry: dict[str, Any], keys: list[str]) -> str:
    return ", ".join(f"{k}={geometry.get(k)}" for k in keys)


def check_compatible(action: str, saved: dict[str, Any], active: dict[str, Any], *, partial: bool = False) -> None:
    """Raise :class:`IncompatibleMotionError` naming both sides when the geometries differ.

    Base and adapter weights are compared by content id where both sides record one (then the base's path
    text is not compared: a moved or symlinked folder is the same base); ``partial``: ``active`` is the cheap
    geometry read from the folders' metadata before anything is built, so only the keys it has are compared.
    """
    theirs = saved.get("backbone", {}).get("geometry", {})
    keys = [k for k in GEOMETRY_KEYS if not partial or k in active]
    both = [k for k in CONTENT_KEYS if theirs.get(k) and active.get(k)]
    compared = [k for k in keys if k not in {CONTENT_KEYS[c][1] for c in both}]
    differ = [k for k in compared if theirs.get(k) != active.get(k)]
    if differ:
        shown = keys + both
        raise IncompatibleMotionError(
            f"motion '{action}' was trained for [{_describe(theirs, shown)}] but the config uses "
            f"[{_describe(active, shown)}] (differs in {', '.join(differ)})",
            hint=f"switch model.backbone / [options.backbone.*] back to the motion's settings, "
                 f"or retrain it: flashctl train {action}")
    for key in both:
        if theirs[key] != active[key]:
            what, replaces = CONTENT_KEYS[key]
            option = f"options.backbone.{active.get('backbone')}.{'base' if replaces else 'motion_adapter'}"
            named = f" {active['base']}" if active.get("base") else f" ({option})"
            where = f"base{named}" if replaces else f"{what} ({option})"
            raise IncompatibleMotionError(
                f"motion '{action}' was trained on {what} weights with content id {theirs[key]} but the configured "
                f"{where} has content id {active[key]}",
                hint=f"point {option} at the {what} the motion was trained on, or retrain it: flashctl train {action}")


def check_format(action: str, record: dict[str, Any], path: Path) -> None:
    """Refuse a ``config.json`` from a newer flashctl, or one older than format 1, in one line naming ``path``."""
    found = record.get("format")
    if found == FORMAT:
        return
    if isinstance(found, int) and found > FORMAT:
        raise WeightsFileError(f"{path} has weights format {found}; this flashctl ({__version__}) reads format {FORMAT}",
                               hint="upgrade flashctl to animate this motion")
    raise WeightsFileError(f"{path} has weights format {found!r}; this flashctl reads format {FORMAT}",
                           hint=f"retrain the motion: flashctl train {action}")


def save_lora(path: Path, tensors: dict[str, Any], metadata: dict[str, str]) -> None:
    """Write LoRA tensors (all finite, else :class:`WeightsFileError`) as safetensors."""
    from safetensors.torch import save_file

    from .modules import require_finite

    require_finite(tensors, path, saving=True)
    save_file(tensors, str(path), metadata=metadata)


def load_lora(path: Path) -> dict[str, Any]:
    """Read LoRA tensors; an unreadable file or one holding NaN/inf is a :class:`WeightsFileError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .modules import require_finite

    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise WeightsFileError(f"motion weights {path} are unreadable: {exc}",
                               hint="retrain the motion to rewrite them (older versions are in its .versions/ folder)") from None
    require_finite(tensors, path, saving=False)
    return tensors


def _motion_lora(weights_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(weights/config.json's "lora" record, the LoRA tensors)`` of a trained motion's weights folder."""
    weights_dir = Path(weights_dir)
    config_path = weights_dir / CONFIG_FILE
    if not config_path.is_file():
        raise WeightsNotFoundError(f"{config_path} not found: {weights_dir} is not a trained motion's weights folder",
                                   hint="pass motions/ACTION/weights of a trained motion (flashctl train ACTION)")
    lora = json.loads(config_path.read_text())["lora"]
    return lora, load_lora(weights_dir / lora.get("file", LORA_FILE))


def _write_export(out_path: Path, tensors: dict[str, Any], metadata: dict[str, str], overwrite: bool) -> Path:
    """Write ``tensors`` atomically to ``out_path``; without ``overwrite`` never over an existing file."""
    out_path = Path(out_path)
    if not overwrite and out_path.exists():
        raise OutputPathError(f"{out_path} already exists", hint="pass --overwrite to replace it, or another -o FILE")
    with atomic_path(out_path) as tmp:
        save_lora(tmp, tensors, metadata)
        if not overwrite and out_path.exists():  # appeared while we wrote
            raise OutputPathError(f"{out_path} already exists",
                                  hint="pass --overwrite to replace it, or another -o FILE")
    return out_path


def diffusers_component(denoiser: Any) -> str:
    """The name diffusers pipelines give ``denoiser``, which prefixes its keys in a LoRA file for ``load_lora_weights``.

    Taken from where diffusers files the model class: the models under ``diffusers.models.transformers``
    (Wan, LTX-Video, HunyuanVideo, CogVideoX) are every pipeline's ``transformer``, the U-Nets its ``unet``.
    Recorded as ``component`` in a motion's ``config.json`` ``lora`` record when the motion LoRA is added.
    """
    return "transformer" if ".models.transformers." in type(denoiser).__module__ else "unet"


def export_lora_for_diffusers(weights_dir: Path, out_path: Path, metadata: dict[str, str] | None = None, *,
                              overwrite: bool = True) -> Path:
    """Write a motion's LoRA so that stock diffusers loads it with ``load_lora_weights(out_path)``.

    Keys get the denoiser's component prefix (``config.json``'s ``lora.component``): ``unet.`` for
    ``AnimateDiffPipeline``, ``transformer.`` for ``WanImageToVideoPipeline`` / ``WanPipeline``. diffusers
    infers ``lora_alpha = rank`` from such a file, so the B matrices carry the motion's ``alpha / rank``
    scale instead. The same base denoiser needs the same attention processors where flashctl's are part of
    the model (AnimateDiff's cross-frame attention; Wan's are the stock ones at inference) to give
    flashctl's output. ``metadata`` (strings) is added to the file's safetensors header.
    """
    lora, state = _motion_lora(weights_dir)
    scale = float(lora["alpha"]) / int(lora["rank"])
    prefix = lora.get("component", DIFFUSERS_COMPONENT) + "."
    tensors = {prefix + k: v * scale if ".lora_B." in k else v for k, v in state.items()}
    return _write_export(out_path, tensors, {**(metadata or {}), "format": "pt", "exported_by": f"flashctl {__version__}",
                                             "rank": str(lora["rank"]), "alpha": str(lora["rank"]),
                                             "lora_B_scaled_by": str(scale)}, overwrite)


def comfyui_name(module: str) -> str:
    """ComfyUI's name for a U-Net module's LoRA: ``lora_unet_`` + the diffusers module path with ``.`` as ``_``.

    (``comfy/lora.py`` ``model_lora_keys_unet`` builds the same names from the diffusers keys of its model.)
    """
    return COMFYUI_PREFIX + module.replace(".", "_")


def lora_to_comfyui(state: dict[str, Any], alpha: float) -> dict[str, Any]:
    """flashctl/peft LoRA tensors -> ComfyUI's LoRA convention (the kohya-ss layout ComfyUI's LoraLoader reads).

    ``M.lora_A.weight`` -> ``lora_unet_M.lora_down.weight``, ``M.lora_B.weight`` -> ``lora_unet_M.lora_up.weight``
    and a scalar ``lora_unet_M.alpha``: ComfyUI scales ``up @ down`` by ``alpha / rank`` itself (rank = the
    rows of ``down``), so the tensors are kept as trained.
    """
    import torch

    out: dict[str, Any] = {}
    for key, tensor in state.items():
        module, kind = _split_lora_key(key)
        name = comfyui_name(module)
        out[f"{name}.{COMFYUI_SUFFIX[kind]}"] = tensor
        out.setdefault(f"{name}.alpha", torch.tensor(float(alpha)))
    return out


def comfyui_to_lora(tensors: dict[str, Any], modules: Any) -> tuple[dict[str, Any], float]:
    """Inverse of :func:`lora_to_comfyui`: ``(flashctl LoRA tensors, alpha)``.

    ``lora_unet_`` names are ambiguous without the model (``down_blocks`` or ``down.blocks``), so, as
    ComfyUI's loader does, they are matched against ``modules``: the names of the U-Net's modules.
    """
    known = {comfyui_name(m): m for m in modules}
    back = {suffix: kind for kind, suffix in COMFYUI_SUFFIX.items()}
    state, alphas = {}, set()
    for key, tensor in tensors.items():
        name, _, suffix = key.partition(".")
        if name not in known:
            raise WeightsFileError(f"ComfyUI LoRA key {key!r} names no module of this U-Net",
                                   hint="convert with the U-Net the LoRA was exported from")
        if suffix == "alpha":
            alphas.add(float(tensor))
        elif suffix in back:
            state[f"{known[name]}.{back[suffix]}"] = tensor
        else:
            raise WeightsFileError(f"ComfyUI LoRA key {key!r}: expected .lora_down.weight, .lora_up.weight or .alpha",
                                   hint="only plain LoRA files convert back")
    if len(alphas) != 1:
        raise WeightsFileError(f"ComfyUI LoRA has {len(alphas)} distinct alpha values; a flashctl motion has one",
                               hint="only files written by `flashctl export --format comfyui` convert back")
    return state, alphas.pop()


def _split_lora_key(key: str) -> tuple[str, str]:
    """``down_blocks.0....to_q.lora_A.weight`` -> ``("down_blocks.0....to_q", "lora_A.weight")``."""
    for kind in COMFYUI_SUFFIX:
        if key.endswith("." + kind):
            return key[: -len(kind) - 1], kind
    raise WeightsFileError(f"LoRA key {key!r} is neither a lora_A nor a lora_B weight",
                           hint="retrain the motion to rewrite its weights")


def export_lora_for_comfyui(weights_dir: Path, out_path: Path, metadata: dict[str, str] | None = None, *,
                            overwrite: bool = True) -> Path:
    """Write a motion's U-Net LoRA in ComfyUI's LoRA key convention (:func:`lora_to_comfyui`).

    A transformer's LoRA is refused: ComfyUI (and musubi-tuner) name DiT layers by the original
    checkpoints' names (Wan: ``blocks.N.self_attn.q``), not diffusers' module paths.
    """
    lora, state = _motion_lora(weights_dir)
    component = lora.get("component", DIFFUSERS_COMPONENT)
    if component != "unet":
        raise IncompatibleMotionError(f"--format comfyui writes U-Net LoRAs; this motion's LoRA is on a {component}, whose "
                              f"layers ComfyUI names by the original checkpoint", hint="use --format diffusers")
    tensors = lora_to_comfyui(state, float(lora["alpha"]))
    return _write_export(out_path, tensors, {**(metadata or {}), "format": "pt", "exported_by": f"flashctl {__version__}",
                                             "rank": str(lora["rank"]), "alpha": str(lora["alpha"])}, overwrite)


EXPORTERS = {"diffusers": export_lora_for_diffusers, "comfyui": export_lora_for_comfyui}


def geometry_sha256(geometry: dict[str, Any]) -> str:
    """A short, stable hash of a motion's base geometry (what a base must match to load it)."""
    return hashlib.sha256(json.dumps(geometry, sort_keys=True).encode()).hexdigest()[:16]


def export_motion(version: Path, out_path: Path, fmt: str, *, action: str, overwrite: bool = False) -> Path:
    """Export the LoRA of a motion version folder (``weights/``, ``provenance.json``) in ``fmt``.

    The file's metadata says what it is: action, run id, base id and geometry hash, flashctl version, format.
    """
    if fmt not in EXPORTERS:
        raise OutputPathError(f"unknown export format {fmt!r}; known: {', '.join(EXPORTERS)}",
                              hint="pass --format diffusers or --format comfyui")
    weights = Path(version) / "weights"
    record = json.loads((weights / CONFIG_FILE).read_text()) if (weights / CONFIG_FILE).is_file() else {}
    geometry = record.get("backbone", {}).get("geometry", {})
    provenance_path = Path(version) / "provenance.json"
    provenance = json.loads(provenance_path.read_text()) if provenance_path.is_file() else {}
    metadata = {"flashctl_action": action, "flashctl_run_id": str(provenance.get("run_id") or "unknown"),
                "flashctl_prompt": str(record.get("prompt", "")), "flashctl_base": str(geometry.get("base", "")),
                "flashctl_geometry_sha256": geometry_sha256(geometry), "flashctl_version": __version__,
                "flashctl_export_format": fmt}
    return EXPORTERS[fmt](weights, out_path, metadata, overwrite=overwrite)


def file_hashes(root: Path) -> dict[str, str]:
    """Relative POSIX path -> sha256 for every file under ``root``."""
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
