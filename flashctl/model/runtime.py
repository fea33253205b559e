"""The ``[runtime]`` switches applied to a built backbone: threads, dtype, attention kernel, VAE
slicing and tiling, CPU offload of the conditioning encoders, ``torch.compile`` of the U-Net.

:func:`apply_runtime` is called by :meth:`flashctl.model.motion_model.MotionModel.build` right after
the backbone is built (before the decoder attaches and before motion LoRA is added), so every
switch holds for the LoRA and decoder layers added later. Switches that only make sense at
inference (``dtype`` casts, ``cpu_offload``) leave a training backbone alone and say so.

``cpu_offload`` moves the modules that run once per video (text encoder, image encoder) to the CPU
and brings each to the GPU only for its own forward. The U-Net and the VAE stay on the GPU: the
backbone's device is its U-Net's (the sampler puts its latents there), and decoders such as DED
run the VAE's blocks directly, where no forward hook would move it.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

from ..errors import ConfigError
from ..progress import NullReporter, Reporter
from .cross_frame import CrossFrameAttnProcessor
from .interfaces import Backbone

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# backbone attributes holding modules: what dtype casts and attention switches look at
MODULES = ("unet", "vae", "text_encoder", "image_encoder")
# conditioning encoders: run once per prompt / reference, so offloading them costs one transfer each
ENCODERS = ("text_encoder", "image_encoder")
KERNEL_PROCESSORS = {"sdpa": AttnProcessor2_0, "eager": AttnProcessor}


def backbone_modules(backbone: Backbone, names: tuple[str, ...] = MODULES) -> dict[str, torch.nn.Module]:
    """The backbone's ``torch.nn.Module`` attributes among ``names``, by name."""
    found = {name: getattr(backbone, name, None) for name in names}
    return {name: m for name, m in found.items() if isinstance(m, torch.nn.Module)}


def apply_runtime(backbone: Backbone, runtime: Any, *, training: bool = False, reporter: Reporter = NullReporter(),
                  compile_backend: str = "inductor", compile_mode: str | None = None) -> Backbone:
    """Apply a :class:`~flashctl.config.RuntimeSection` to ``backbone`` in place; returns it.

    ``compile_backend`` / ``compile_mode`` go to ``torch.compile`` when ``runtime.compile`` is on
    (tests use ``"eager"``: it traces with dynamo but generates no code).
    """
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    set_dtype(backbone, runtime.dtype, training=training, reporter=reporter)
    set_attention(backbone, runtime.attention, reporter=reporter)
    # slicing also slices encoding, which only costs time when training re-encodes clips every step
    set_vae_memory(backbone, slicing=runtime.vae_slicing and not training, tiling=runtime.vae_tiling, reporter=reporter)
    if runtime.cpu_offload:
        if runtime.compile:
            raise ConfigError("runtime.compile = true with runtime.cpu_offload = true: the offload hooks move modules "
                              "inside the compiled call", hint="turn one of them off")
        if training:
            reporter.note("runtime.cpu_offload applies to inference only; training keeps every module on "
                          f"{runtime.device}", level="warning")
        elif torch.device(runtime.device).type == "cpu":
            reporter.note("runtime.cpu_offload: runtime.device is cpu, nothing to offload", level="warning")
        else:
            enable_cpu_offload(backbone, runtime.device)
    if runtime.compile:
        compile_unet(backbone, backend=compile_backend, mode=compile_mode)
    return backbone


def set_dtype(backbone: Backbone, dtype: str, *, training: bool = False, reporter: Reporter = NullReporter()) -> None:
    """Cast every backbone module to ``dtype`` (``runtime.dtype``) for inference; training is left as built."""
    if dtype not in DTYPES:
        raise ConfigError(f"runtime.dtype: unknown dtype {dtype!r}", hint=f"one of {', '.join(DTYPES)}")
    target = DTYPES[dtype]
    if training:
        if target != torch.float32:
            reporter.note(f"runtime.dtype = {dtype} is for inference; training precision is "
                          "train.mixed_precision", level="warning")
        return
    for module in backbone_modules(backbone).values():
        if module.dtype != target:
            module.to(dtype=target)


def set_attention(backbone: Backbone, kernel: str, *, reporter: Reporter = NullReporter()) -> int:
    """Switch every diffusers attention processor of the U-Net and VAE to ``kernel`` (``sdpa`` | ``eager``).

    Cross-frame processors keep their class and get ``kernel``; stock ``AttnProcessor2_0`` /
    ``AttnProcessor`` are swapped for each other; other processors (plugins') are kept, with a note.
    Returns how many processors now run ``kernel``.
    """
    if kernel not in KERNEL_PROCESSORS:
        raise ConfigError(f"runtime.attention: unknown kernel {kernel!r}", hint=f"one of {', '.join(KERNEL_PROCESSORS)}")
    stock = tuple(KERNEL_PROCESSORS.values())
    switched, kept = 0, set()
    for module in backbone_modules(backbone, ("unet", "vae")).values():
        if not hasattr(module, "set_attn_processor"):
            continue
        processors = module.attn_processors
        for name, proc in processors.items():
            if isinstance(proc, CrossFrameAttnProcessor):
                proc.kernel = kernel
            elif type(proc) in stock:
                processors[name] = KERNEL_PROCESSORS[kernel]()
            else:
                kept.add(type(proc).__name__)
                continue
            switched += 1
        module.set_attn_processor(processors)
    if kept:
        reporter.note(f"runtime.attention = {kernel}: kept plugin processors {', '.join(sorted(kept))} as they are")
    return switched


def set_vae_memory(backbone: Backbone, *, slicing: bool, tiling: bool, reporter: Reporter = NullReporter()) -> None:
    """``runtime.vae_slicing`` (decode one frame at a time) and ``runtime.vae_tiling`` (decode in tiles).

    Slicing is on by default, so a VAE without it (SVD's temporal decoder decodes a video's frames
    together) only gets a note; asking for tiling on such a VAE is a :class:`ConfigError`.
    """
    vae = backbone.vae
    kind = type(vae).__name__
    if hasattr(vae, "use_slicing"):
        vae.enable_slicing() if slicing else vae.disable_slicing()
    elif slicing:
        reporter.note(f"runtime.vae_slicing: {kind} of backbone '{backbone.name}' has no slicing; "
                      "it decodes all frames at once")
    if hasattr(vae, "use_tiling"):
        vae.enable_tiling() if tiling else vae.disable_tiling()
    elif tiling:
        raise ConfigError(f"runtime.vae_tiling = true but {kind} of backbone '{backbone.name}' cannot decode in tiles",
                          hint="set runtime.vae_tiling = false (lower memory with runtime.vae_slicing instead)")


def _place(module: torch.nn.Module, device: torch.device) -> None:
    """Move ``module`` (the one place offload moves weights; tests watch it)."""
    module.to(device)


def offload(module: torch.nn.Module, device: str | torch.device, storage: str | torch.device = "cpu") -> None:
    """Keep ``module`` on ``storage``; each forward moves it and its inputs to ``device`` and the module back after.

    Outputs are returned on the device the inputs came from.
    """
    from accelerate.utils import find_device, send_to_device

    device, storage = torch.device(device), torch.device(storage)
    origin: dict[str, torch.device | None] = {}

    def before(mod: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        origin["device"] = find_device([args, kwargs])
        _place(mod, device)
        return send_to_device(args, device), send_to_device(kwargs, device)

    def after(mod: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        _place(mod, storage)
        return output if origin["device"] is None else send_to_device(output, origin["device"])

    _place(module, storage)
    module.register_forward_pre_hook(before, with_kwargs=True)
    module.register_forward_hook(after, with_kwargs=True)


def enable_cpu_offload(backbone: Backbone, device: str | torch.device, storage: str | torch.device = "cpu") -> list[str]:
    """Offload the backbone's conditioning encoders (text / image) to ``storage``; returns their names."""
    encoders = backbone_modules(backbone, ENCODERS)
    for module in encoders.values():
        offload(module, device, storage)
    return list(encoders)


def compile_unet(backbone: Backbone, *, backend: str = "inductor", mode: str | None = None) -> None:
    """``torch.compile`` the U-Net in place (``nn.Module.compile``): parameter names, hence LoRA keys, stay."""
    backbone.unet.compile(backend=backend, mode=mode)
