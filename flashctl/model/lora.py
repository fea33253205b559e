"""Motion LoRA: the per-action parameters, injected with peft into the backbone's U-Net.

Targets come from the backbone (temporal attention q/k/v/out and the cross-frame attention's
query) plus any ``train.lora_extra_targets`` module-name patterns; a motion records the full list
and is loaded with exactly those. Only LoRA tensors are trainable and saved; the base stays frozen
and shared.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from ..errors import ConfigError, IncompatibleMotionError
from .interfaces import Backbone

ADAPTER = "motion"


def lora_targets(backbone: Backbone, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The backbone's own LoRA target patterns followed by ``extra`` (regexes over module names)."""
    return [*backbone.lora_targets, *[p for p in extra if p not in backbone.lora_targets]]


def lora_config(targets: list[str], rank: int, alpha: float) -> Any:
    from peft import LoraConfig

    pattern = "|".join(f"(?:{p})" for p in targets)
    return LoraConfig(r=rank, lora_alpha=alpha, target_modules=pattern, init_lora_weights=True)


def add_motion_lora(backbone: Backbone, rank: int, alpha: float,
                    targets: list[str] | None = None) -> list[torch.nn.Parameter]:
    """Wrap the target layers (default: the backbone's) with a fresh LoRA (B = 0, so the output is unchanged).

    Returns the LoRA parameters, the only trainable ones.
    """
    from peft import inject_adapter_in_model

    unet = backbone.unet  # peft directly: not every diffusers U-Net has add_adapter (SVD's has none)
    config = lora_config(targets or lora_targets(backbone), rank, alpha)
    inject_adapter_in_model(config, unet, adapter_name=ADAPTER)
    _accept_input_keyword(unet)
    unet.requires_grad_(False)
    params = [p for n, p in unet.named_parameters() if ".lora_" in n]
    for p in params:
        p.requires_grad_(True)
    return params


def check_extra_targets(backbone: Backbone, patterns: list[str] | tuple[str, ...]) -> None:
    """Refuse a ``train.lora_extra_targets`` pattern that matches no layer (it would silently train nothing)."""
    modules = dict(backbone.unet.named_modules())
    for pattern in patterns:
        if not any(re.fullmatch(pattern, name) for name in modules):  # peft matches whole module names
            linears = [n for n, m in modules.items() if isinstance(m, torch.nn.Linear)]
            example = next((n for n in linears if "motion_modules" in n), linears[0] if linears else "")
            raise ConfigError(f"train.lora_extra_targets: {pattern!r} matches no layer of this U-Net",
                              hint=f"the regex must match a whole layer name, e.g. {example!r}")


def _accept_input_keyword(unet: torch.nn.Module) -> None:
    """Let wrapped layers be called as ``layer(input=x)``, as diffusers' motion modules call proj_in/proj_out.

    peft's LoRA layers take the input as ``x``; without this, a ``train.lora_extra_targets`` pattern that
    matches such a layer fails at the first step with "forward() missing 1 required positional argument".
    """
    from peft.tuners.lora import LoraLayer

    def positional(_module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if args or "input" not in kwargs:
            return None
        kwargs = dict(kwargs)
        return (kwargs.pop("input"),), kwargs

    for layer in unet.modules():
        if isinstance(layer, LoraLayer):
            layer.register_forward_pre_hook(positional, with_kwargs=True)


def lora_state_dict(backbone: Backbone) -> dict[str, torch.Tensor]:
    """The LoRA tensors only, CPU and contiguous (safetensors-ready)."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(backbone.unet, adapter_name=ADAPTER)
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def set_motion_strength(backbone: Backbone, strength: float) -> None:
    """Scale the motion LoRA's output by ``strength`` (1 = as trained, 0 = the base alone)."""
    from peft.tuners.lora import LoraLayer

    for layer in backbone.unet.modules():
        if isinstance(layer, LoraLayer):
            layer.set_scale(ADAPTER, strength)  # peft skips layers without this adapter


def load_motion_lora(backbone: Backbone, state: dict[str, torch.Tensor], rank: int, alpha: float,
                     source: str, targets: list[str] | None = None) -> None:
    """Add a LoRA with the saved rank/alpha/targets and load ``state`` into it; mismatched keys name ``source``."""
    from peft import set_peft_model_state_dict

    add_motion_lora(backbone, rank, alpha, targets)
    result = set_peft_model_state_dict(backbone.unet, state, adapter_name=ADAPTER)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise IncompatibleMotionError(f"{source}: {len(unexpected)} LoRA tensors do not fit this backbone "
                                      f"(first: {unexpected[0]})", hint="retrain the motion with the active config")
    backbone.unet.requires_grad_(False)
