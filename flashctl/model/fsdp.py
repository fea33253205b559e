"""Train a motion LoRA on a denoiser too large for one device: FSDP2 (``torch.distributed.fsdp.fully_shard``).

Asked for by ``accelerate launch --config_file docs/accelerate/fsdp.yaml`` (``distributed_type: FSDP``, which
sets ``ACCELERATE_USE_FSDP=true`` and the ``FSDP_*`` settings in every process). flashctl shards the
denoiser itself rather than through ``accelerator.prepare(model)``:

* the units are the denoiser's blocks (:data:`UNITS`: transformer, ResNet and motion blocks of the
  AnimateDiff and SVD U-Nets, Wan's DiT blocks), sharded innermost first, then the denoiser as a whole, so
  a forward gathers one block's weights at a time; UNetMotionModel names no ``_no_split_modules`` for
  accelerate's own wrap policy to use;
* FSDP2 shards in place: the module keeps its class path and attribute names, so the backbone, the
  Motion Alignment Module's processors and peft still address it as before;
* accelerate itself turns ``distributed_type: FSDP`` into FSDP only on accelerators; on CPU processes it
  falls back to plain gloo data parallelism, and this module still shards (torch's FSDP2 runs on gloo),
  which is how the tests exercise it.

Frozen base weights and LoRA are both sharded; only the LoRA is trainable and gets gradients, which FSDP
reduce-scatters (averaged over processes: no hand-averaging on top). After training every process calls
:func:`gather_trainable`, which all-gathers the LoRA into full CPU tensors; the main process loads them
into an unsharded model (:func:`load_trainable`) to render the preview and save the motion.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from ..errors import ConfigError

# block classes that become one FSDP unit each (those a model lacks are simply absent)
UNITS = frozenset({"BasicTransformerBlock", "TemporalBasicTransformerBlock", "ResnetBlock2D",
                   "SpatioTemporalResBlock", "AnimateDiffTransformer3D", "TransformerSpatioTemporalModel",
                   "WanTransformerBlock"})
PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16}


def fsdp_requested() -> bool:
    """Whether ``accelerate launch`` was given an FSDP config (``distributed_type: FSDP``)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def check_fsdp(checkpoint_every: int, resume: bool) -> None:
    """Refuse what FSDP training does not do: FSDP1 configs and resumable checkpoints (they hold unsharded LoRA)."""
    version = os.environ.get("FSDP_VERSION", "1")
    if version != "2":
        raise ConfigError(f"accelerate config: fsdp_version = {version}; flashctl shards with FSDP2",
                          hint="set fsdp_config.fsdp_version: 2 (see docs/accelerate/fsdp.yaml)")
    if checkpoint_every or resume:
        raise ConfigError(f"train.checkpoint_every = {checkpoint_every}{' and --resume' if resume else ''} under FSDP: "
                          "checkpoints are not sharded", hint="set train.checkpoint_every = 0 and drop --resume "
                                                              "when launching with an FSDP config")


def shard_denoiser(module: torch.nn.Module, mixed_precision: str = "no") -> list[torch.nn.Parameter]:
    """Shard ``module`` over every process (a collective: all call it, with identical weights); returns its
    trainable parameters, which are new (sharded) objects: build the optimizer from these.

    Each :data:`UNITS` block is a unit, innermost first, then ``module`` itself. The weights move to this
    process's device as they are sharded, so a denoiser built on the CPU never needs a whole copy on one GPU.
    ``mixed_precision`` (``bf16``/``fp16``) gathers and computes the weights in that dtype and reduces
    gradients in float32; the sharded weights keep their own dtype.
    """
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

    settings: dict[str, Any] = {
        "reshard_after_forward": os.environ.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower() == "true",
        "offload_policy": CPUOffloadPolicy() if os.environ.get("FSDP_OFFLOAD_PARAMS", "false").lower() == "true"
        else OffloadPolicy(),
        "mp_policy": MixedPrecisionPolicy(param_dtype=PRECISIONS.get(mixed_precision), reduce_dtype=torch.float32),
    }
    units = [m for m in module.modules() if type(m).__name__ in UNITS and m is not module]
    for unit in reversed(units):  # children before parents: a parent's shard must not re-shard a child's
        fully_shard(unit, **settings)
    fully_shard(module, **settings)
    return [p for p in module.parameters() if p.requires_grad]


def shard_backbone(backbone: Any, device: torch.device | str, mixed_precision: str = "no") -> list[torch.nn.Parameter]:
    """Shard the backbone's denoiser (:func:`shard_denoiser`) and move its other modules (VAE, encoders), which
    every process keeps whole, to ``device``; returns the trainable parameters for the optimizer."""
    from .runtime import MODULES, backbone_modules

    params = shard_denoiser(backbone.unet, mixed_precision)
    for module in backbone_modules(backbone, tuple(name for name in MODULES if name != "unet")).values():
        module.to(device)
    return params


def unsharded_model(config: Any, host: Any, ctx: Any, lora: dict[str, Any], extra_targets: list[str],
                    state: dict[str, torch.Tensor]) -> Any:
    """A fresh :class:`~flashctl.model.motion_model.MotionModel` on ``config.runtime.device`` holding the trained
    LoRA ``state`` (from :func:`gather_trainable`); ``lora`` is the trained model's ``lora`` record (rank, alpha)."""
    from .motion_model import MotionModel

    model = MotionModel.build(config, host, ctx, training=True)
    model.add_motion(lora["rank"], lora["alpha"], extra_targets)
    load_trainable(model.backbone.unet, state)
    return model


def local_share(module: torch.nn.Module) -> tuple[int, int]:
    """``(elements this process holds, elements of the whole module)`` of a sharded module's parameters."""
    local = sum(getattr(p, "to_local", lambda: p)().numel() for p in module.parameters())
    return local, sum(p.numel() for p in module.parameters())


def gather_trainable(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every trainable parameter of a sharded ``module`` as a full CPU tensor, by name (a collective)."""
    full = {}
    for name, param in module.named_parameters():
        if param.requires_grad:
            tensor = param.full_tensor() if hasattr(param, "full_tensor") else param
            full[name] = tensor.detach().cpu()
    return full


def load_trainable(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy :func:`gather_trainable`'s tensors into an unsharded ``module`` of the same build (same LoRA)."""
    trainable = {name: p for name, p in module.named_parameters() if p.requires_grad}
    if trainable.keys() != state.keys():
        missing, extra = sorted(trainable.keys() - state.keys()), sorted(state.keys() - trainable.keys())
        raise ValueError(f"gathered LoRA does not fit the model: missing {missing[:3]}, unexpected {extra[:3]}")
    with torch.no_grad():
        for name, param in trainable.items():
            param.copy_(state[name])
