"""Training objectives: how a backbone's latents are noised, what its denoiser predicts, how it is sampled.

An objective belongs to its backbone (``backbone.objective``); the training loss and the sampler in
:mod:`flashctl.model.flash` only call the :class:`Objective` protocol, so they work for any of them:

* :class:`DiffusionObjective`: discrete variance-preserving diffusion (DDPM betas), epsilon or v
  prediction. AnimateDiff's SD1.5 schedule; SVD's EDM written as a VP table (the SVD plugin's
  ``schedule.py`` says why that is the same thing).
* :class:`FlowMatchingObjective`: rectified flow, ``x_s = (1 - s) x0 + s eps`` predicting the
  velocity ``eps - x0`` (the DiT video models: Wan, LTX, HunyuanVideo), sampled with diffusers'
  flow-matching Euler scheduler or, as Wan's own pipelines sample, UniPC on flow sigmas (``unipc``).

Latents are ``(B, F, c, h, w)``; timesteps ``(B,)``, one per video, in the units the denoiser is
conditioned on.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler,
                       FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler)

from ..errors import ConfigError

SCHEDULERS = {"ddim": DDIMScheduler, "euler": EulerDiscreteScheduler, "dpm++": DPMSolverMultistepScheduler}


@runtime_checkable
class Objective(Protocol):
    name: str
    scheduler_config: dict[str, Any]  # recorded with every motion trained on it

    def draw(self, latents: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Noise like ``latents`` and one training timestep per video ``(B,)``, drawn on CPU from ``generator``."""

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The noisy latents the denoiser sees at ``timesteps``."""

    def target(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """What the denoiser must predict there."""

    def loss_weight(self, timesteps: torch.Tensor) -> torch.Tensor:
        """``(B,)`` weight of each video's MSE."""

    def sampler(self, name: str) -> Any:
        """A diffusers scheduler for sampling (``animate.scheduler``)."""

    def start(self, sampler: Any, latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``latents`` noised to ``sampler``'s first timestep (after ``set_timesteps``), in its own parameterisation."""


def _per_video(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(B,)`` -> ``(B, 1, 1, 1, 1)`` on ``like``'s device and dtype."""
    return x.to(like.device, like.dtype).view(-1, *[1] * (like.dim() - 1))


def _unknown_sampler(name: str, known: list[str]) -> ConfigError:
    return ConfigError(f"animate.scheduler: unknown scheduler '{name}'", hint=f"one of {', '.join(known)}")


class DiffusionObjective:
    """DDPM-style VP diffusion from a diffusers scheduler config (betas, ``prediction_type``)."""

    def __init__(self, scheduler_config: dict[str, Any]) -> None:
        self.scheduler_config = dict(scheduler_config)
        self.scheduler = DDPMScheduler.from_config(self.scheduler_config)
        self.prediction_type = self.scheduler.config.prediction_type
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ConfigError(f"scheduler prediction_type '{self.prediction_type}' is not supported for training",
                              hint="use 'epsilon' or 'v_prediction'")
        self.name = f"diffusion-{self.prediction_type}"
        self.num_train_timesteps = self.scheduler.config.num_train_timesteps
        self.alphas_cumprod = self.scheduler.alphas_cumprod  # (T,)

    def draw(self, latents: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
        timesteps = torch.randint(0, self.num_train_timesteps, (latents.shape[0],), generator=generator)
        return noise, timesteps.to(latents.device)

    def signal_and_noise(self, timesteps: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sqrt(abar_t) and sqrt(1 - abar_t) per video ``(B, 1, 1, 1, 1)``, for integer or fractional timesteps."""
        t = torch.as_tensor(timesteps).flatten().expand(like.shape[0])  # (B,)
        index = t.round().long().clamp(0, len(self.alphas_cumprod) - 1).cpu()
        abar = _per_video(self.alphas_cumprod[index], like)
        return abar.sqrt(), (1 - abar).sqrt()

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        b = latents.shape[0]
        noisy = self.scheduler.add_noise(latents.flatten(1), noise.flatten(1), timesteps)  # (B, F*c*h*w)
        return noisy.view(b, *latents.shape[1:])

    def target(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        if self.prediction_type == "epsilon":
            return noise
        b = latents.shape[0]
        return self.scheduler.get_velocity(latents.flatten(1), noise.flatten(1), timesteps).view(b, *latents.shape[1:])

    def loss_weight(self, timesteps: torch.Tensor) -> torch.Tensor:
        return torch.ones(timesteps.shape[0], device=timesteps.device)

    def sampler(self, name: str) -> Any:
        if name not in SCHEDULERS:
            raise _unknown_sampler(name, list(SCHEDULERS))
        return SCHEDULERS[name].from_config(self.scheduler_config)

    def start(self, sampler: Any, latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return sampler.add_noise(latents, noise, sampler.timesteps[:1])


class FlowMatchEuler(FlowMatchEulerDiscreteScheduler):
    """diffusers' flow-matching Euler sampler with the two members the other samplers have (both identities here)."""

    init_noise_sigma = 1.0

    def scale_model_input(self, sample: torch.Tensor, timestep: Any = None) -> torch.Tensor:
        return sample


class FlowUniPC(UniPCMultistepScheduler):
    """diffusers' UniPC on flow sigmas, taking the ``generator`` the other samplers' ``step`` takes (it draws no noise)."""

    def step(self, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor, generator: Any = None,
             **kwargs: Any) -> Any:
        return super().step(model_output, timestep, sample, **kwargs)


class FlowMatchingObjective:
    """Rectified flow: ``x_s = (1 - s) x0 + s eps``, velocity target ``eps - x0``, ``s`` = timestep / T.

    ``shift`` (as the DiT models use it) moves the training draw and the sampler's steps towards high
    noise: ``s' = shift s / (1 + (shift - 1) s)``. Samplers: ``euler`` (diffusers' flow-matching Euler) and
    ``unipc`` (UniPC on flow sigmas with the same shift: the scheduler Wan's diffusers pipelines ship with).
    """

    SAMPLERS = ("euler", "unipc")

    name = "flow-matching"

    def __init__(self, num_train_timesteps: int = 1000, shift: float = 1.0) -> None:
        self.num_train_timesteps, self.shift = num_train_timesteps, shift
        self.scheduler_config = {"num_train_timesteps": num_train_timesteps, "shift": shift}

    def _sigma(self, timesteps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return _per_video(torch.as_tensor(timesteps, dtype=torch.float64) / self.num_train_timesteps, like)

    def draw(self, latents: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
        s = torch.rand(latents.shape[0], generator=generator, dtype=torch.float64)  # (B,) in [0, 1)
        s = self.shift * s / (1 + (self.shift - 1) * s)
        return noise, (s * self.num_train_timesteps).float().to(latents.device)

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        s = self._sigma(timesteps, latents)
        return (1 - s) * latents + s * noise

    def target(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return noise - latents

    def loss_weight(self, timesteps: torch.Tensor) -> torch.Tensor:
        return torch.ones(timesteps.shape[0], device=timesteps.device)

    def sampler(self, name: str) -> Any:
        if name not in self.SAMPLERS:
            raise _unknown_sampler(name, list(self.SAMPLERS))
        if name == "unipc":
            return FlowUniPC(num_train_timesteps=self.num_train_timesteps, prediction_type="flow_prediction",
                             use_flow_sigmas=True, flow_shift=self.shift)
        return FlowMatchEuler(num_train_timesteps=self.num_train_timesteps, shift=self.shift)

    def start(self, sampler: Any, latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``latents`` noised to the sampler's first step, at its exact first sigma (UniPC rounds its timesteps)."""
        s = sampler.sigmas[0].to(latents.device, latents.dtype)
        return (1 - s) * latents + s * noise
