"""Noise schedules: diffusers schedulers by name, forward noising and the training target."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

from ..errors import ConfigError

SCHEDULERS = {"ddim": DDIMScheduler, "euler": EulerDiscreteScheduler, "dpm++": DPMSolverMultistepScheduler}


def make_scheduler(name: str, config: dict[str, Any]) -> Any:
    """A sampling scheduler (``ddim``, ``euler``, ``dpm++``) from the backbone's scheduler config."""
    if name not in SCHEDULERS:
        raise ConfigError(f"animate.scheduler: unknown scheduler '{name}'", hint=f"one of {', '.join(SCHEDULERS)}")
    return SCHEDULERS[name].from_config(config)


def training_scheduler(config: dict[str, Any]) -> DDPMScheduler:
    """The forward process the backbone was trained with (betas, prediction type)."""
    return DDPMScheduler.from_config(config)


def add_noise(scheduler: DDPMScheduler, latents: torch.Tensor, noise: torch.Tensor,
              timesteps: torch.Tensor) -> torch.Tensor:
    """q(z_t | z_0) for ``(B, F, c, h, w)`` latents and one timestep per video ``(B,)``."""
    b = latents.shape[0]
    noisy = scheduler.add_noise(latents.flatten(1), noise.flatten(1), timesteps)  # (B, F*c*h*w)
    return noisy.view(b, *latents.shape[1:])


def training_target(scheduler: DDPMScheduler, latents: torch.Tensor, noise: torch.Tensor,
                    timesteps: torch.Tensor) -> torch.Tensor:
    """What the denoiser must predict: the noise (epsilon) or the velocity (v), per the config."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        b = latents.shape[0]
        return scheduler.get_velocity(latents.flatten(1), noise.flatten(1), timesteps).view(b, *latents.shape[1:])
    raise ConfigError(f"scheduler prediction_type '{kind}' is not supported for training",
                      hint="use 'epsilon' or 'v_prediction'")
