"""train's low-memory settings: ``[train]`` mixed_precision, gradient_checkpointing, frozen_dtype, augment_bank.

Each may be ``"auto"``: on for real-weight presets (``sd15``, ``svd``; any backbone preset but ``tiny``), off
for the tiny ones, whose runs stay as they were. :func:`resolve_memory` turns the autos into values before
anything is built (the accelerator needs the precision first); :func:`apply_memory` applies them to the built
model once the motion LoRA is in. Measured savings: docs/performance.md (``bench/memory.py``).

* ``gradient_checkpointing``: diffusers' own (resnets, spatial transformer blocks) plus the backbone's
  ``checkpoint_modules`` (AnimateDiff's motion modules, SVD's temporal blocks), where the LoRA trains.
* ``frozen_dtype = "mixed"``: the frozen U-Net and the prompt/image encoder are stored in the mixed-precision
  dtype; the LoRA parameters (and so their gradients and AdamW state) stay float32, and the VAE stays float32
  (the detail decoder's trained layers live in its dtype).
* ``augment_bank``: the augmented copies are drawn and VAE-encoded once, one frame at a time, before step 1
  (:func:`augmented_bank`), so no VAE runs inside the steps.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..config import FlashConfig, TrainSection
from ..model.checkpointing import checkpoint_modules
from ..model.runtime import backbone_modules

REAL_BANK = 8  # augment_bank = "auto" on real-weight presets: 8 copies per clip (16 clips: 128 copies)
HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}
FROZEN = ("unet", "text_encoder", "image_encoder")  # cast by frozen_dtype = "mixed"; the VAE is not


def real_weights(config: FlashConfig) -> bool:
    """Whether the configured backbone runs a real-weight preset (anything but ``tiny``)."""
    return config.component_options("backbone", config.model.backbone).get("preset", "tiny") != "tiny"


def resolve_memory(settings: TrainSection, config: FlashConfig) -> TrainSection:
    """``settings`` with every ``"auto"`` low-memory setting replaced by its value for ``config``'s backbone.

    Re-validated, so an explicit ``frozen_dtype = "mixed"`` whose precision resolves to ``"no"`` is refused.
    """
    real = real_weights(config)
    checkpointing = settings.gradient_checkpointing
    precision = settings.mixed_precision if settings.mixed_precision != "auto" else ("bf16" if real else "no")
    update = {
        "mixed_precision": precision,
        "gradient_checkpointing": real if checkpointing == "auto" else checkpointing,
        "frozen_dtype": settings.frozen_dtype if settings.frozen_dtype != "auto" else
        ("mixed" if precision != "no" else "float32"),
        "augment_bank": (REAL_BANK if real else 0) if settings.augment_bank == "auto" else settings.augment_bank,
    }
    return TrainSection.model_validate({**settings.model_dump(), **update})


def apply_memory(backbone: Any, settings: TrainSection, lora: list[torch.nn.Parameter]) -> dict[str, Any]:
    """Apply resolved ``settings`` to ``backbone`` (after the motion LoRA ``lora`` is added, before the optimizer
    is made); returns what was done, for notes and benchmarks."""
    done: dict[str, Any] = {"checkpointed": [], "frozen_dtype": "float32"}
    if settings.gradient_checkpointing:
        backbone.unet.enable_gradient_checkpointing()
        done["checkpointed"] = checkpoint_modules(backbone.unet, getattr(backbone, "checkpoint_modules", None))
    if settings.frozen_dtype == "mixed":
        cast_frozen(backbone, HALF[settings.mixed_precision], lora)
        done["frozen_dtype"] = str(HALF[settings.mixed_precision]).removeprefix("torch.")
    return done


def cast_frozen(backbone: Any, dtype: torch.dtype, keep: list[torch.nn.Parameter]) -> None:
    """Cast the backbone's U-Net and prompt/image encoder to ``dtype``, except the parameters in ``keep``."""
    kept = {id(p): p.dtype for p in keep}
    for module in backbone_modules(backbone, FROZEN).values():
        module.to(dtype=dtype)
    for p in keep:
        p.data = p.data.to(kept[id(p)])


def encode_clip(backbone: Any, video: torch.Tensor) -> torch.Tensor:
    """``(B, F, 3, S, S)`` -> ``(B, F, c, h, w)`` latents, all frames in one VAE call."""
    return backbone.encode_video(video)


def encode_frames(backbone: Any, video: torch.Tensor) -> torch.Tensor:
    """``(B, F, 3, S, S)`` -> ``(B, F', c, h, w)`` latents, one frame per VAE call (any image VAE: SVD's has no
    slicing). A VAE that compresses time (a backbone with ``latent_frames``, e.g. Wan's) gets the clip whole."""
    if getattr(backbone, "latent_frames", None) is not None:
        return backbone.encode_video(video)
    return torch.cat([backbone.encode_video(video[:, f:f + 1]) for f in range(video.shape[1])], dim=1)


def augmented_bank(clips: torch.Tensor, augmentations: list[tuple[str, Callable]], copies: int,
                   generator: torch.Generator, backbone: Any) -> torch.Tensor:
    """``copies`` augmented copies of each of the ``(N, F, 3, S, S)`` clips, one augmentation drawn per copy,
    encoded by :func:`encode_frames` -> ``(N, copies, F', c, h, w)`` latents on the CPU."""
    bank = []
    for clip in clips:
        picks = torch.randint(len(augmentations), (copies,), generator=generator).tolist()
        videos = [augmentations[k][1](clip, generator)[None] for k in picks]  # copies x (1, F, 3, S, S)
        bank.append(torch.cat([encode_frames(backbone, v).cpu() for v in videos]))  # (copies, F, c, h, w)
    return torch.stack(bank)
