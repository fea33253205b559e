"""flashctl export: a trained motion's LoRA as one safetensors file for diffusers or ComfyUI."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import MotionNotTrainedError, OutputPathError
from .console import err, print_json
from .motions import LibraryOpt, _library_at
from .options import JsonOpt

FORMATS = ("diffusers", "comfyui")
SUFFIX = ".safetensors"


def _check_output(path: Path) -> None:
    """-o must name a .safetensors file in an existing folder (existing files are left to --overwrite)."""
    if path.is_dir():
        raise OutputPathError(f"-o {path} is a folder; export writes one file",
                              hint=f"name the file, e.g. -o {path / ('motion' + SUFFIX)}")
    if path.suffix != SUFFIX:
        raise OutputPathError(f"-o {path}: an exported LoRA is a {SUFFIX} file",
                              hint=f"use -o {path.with_suffix(SUFFIX)}")
    if not path.parent.is_dir():
        raise OutputPathError(f"-o {path}: folder {path.parent} does not exist",
                              hint=f"create it first (mkdir -p {path.parent}) or pick another -o FILE")


def export(
    action: Annotated[str, typer.Argument(help="A trained action in the motion library.")],
    format_: Annotated[str, typer.Option(
        "--format", "-f", metavar="FORMAT",
        help="diffusers: keys '<component>.<module>.lora_A/B.weight' for the pipeline's load_lora_weights (component "
             "'unet' for AnimateDiffPipeline, 'transformer' for WanImageToVideoPipeline; B carries alpha/rank). "
             "comfyui (U-Net motions): ComfyUI's LoraLoader convention 'lora_unet_<module_with_underscores>."
             "lora_down/lora_up.weight' + '.alpha'.")],
    output: Annotated[Path, typer.Option("--output", "-o", metavar="FILE", help="The .safetensors file to write.")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing FILE.")] = False,
    library: LibraryOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Export ACTION's motion LoRA (the current version, checked against its provenance hashes) as FILE.

    The file's metadata records the action, run id, base id, geometry hash, flashctl version and format.
    A fitted detail decoder is not part of a LoRA and stays behind. Prints FILE's path.
    """
    from safetensors import safe_open

    from ..model.motion_files import CONFIG_FILE, export_motion

    if format_ not in FORMATS:
        raise OutputPathError(f"--format {format_!r} is not an export format; known: {', '.join(FORMATS)}",
                              hint="pass --format diffusers or --format comfyui")
    _check_output(output)
    lib = _library_at(library)
    lib.require(action)
    version = lib.version_dir(action)  # resolved once: every file below comes from the same save
    if not (version / "weights" / CONFIG_FILE).is_file():
        raise MotionNotTrainedError(f"motion '{action}' has no weights yet (no {version / 'weights' / CONFIG_FILE})",
                                    hint=f"train it first: flashctl train {action}")
    lib.check_version(action, version)
    path = export_motion(version, output, format_, action=action, overwrite=overwrite)
    with safe_open(str(path), framework="pt") as fh:
        metadata, tensors = fh.metadata() or {}, len(list(fh.keys()))
    if json_:
        print_json({"path": str(path), "format": format_, "tensors": tensors, "metadata": metadata})
        return
    typer.echo(str(path))
    err.print(f"exported '{action}' run {metadata.get('flashctl_run_id')} for {format_}: {tensors} tensors, "
              f"base {metadata.get('flashctl_base')}")
    if (version / "weights" / "decoder.safetensors").is_file():
        err.print("note: the motion's fitted detail decoder (weights/decoder.safetensors) is not part of the LoRA")
