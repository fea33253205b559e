"""SVD's EDM noise levels written as a discrete VP schedule, so flashctl's loss and samplers fit as they are.

SVD is an EDM model with v-scaling: for ``x_sigma = x0 + sigma * eps`` its U-Net sees
``c_in * x_sigma`` with ``c_in = 1 / sqrt(sigma^2 + 1)``, is conditioned on ``c_noise = log(sigma) / 4``
and predicts ``v``, with ``x0 = x_sigma / (sigma^2 + 1) - sigma / sqrt(sigma^2 + 1) * v``. Put
``alpha_bar = 1 / (1 + sigma^2)`` and this is the VP world of :mod:`flashctl.model.objectives`:
``c_in * x_sigma`` is ``DDPMScheduler.add_noise``'s ``x_t``, ``v`` is ``get_velocity``'s target, and
EDM's v-weighting ``(sigma^2 + 1) / sigma^2`` on the x0 error is the plain MSE on ``v``.

So the schedule is a table of ``steps`` noise levels, log-spaced from ``sigma_min`` to ``sigma_max``
(SVD's 0.002 .. 700) and handed to diffusers as ``trained_betas``. Every scheduler then passes the
denoiser a table index ``t`` (fractional for Karras sigmas); :func:`noise_condition` turns it into
SVD's ``c_noise``. The one departure from SVD's training: flashctl draws ``t`` uniformly, i.e.
``log(sigma)`` uniform over the range, where SVD drew it from a normal distribution.
"""

from __future__ import annotations

import math
from typing import Any

import torch

TRAIN_STEPS = 1000


def _log_sigma(t: torch.Tensor, sigma_min: float, sigma_max: float, steps: int) -> torch.Tensor:
    lo, hi = math.log(sigma_min), math.log(sigma_max)
    return lo + t.double() / (steps - 1) * (hi - lo)


def scheduler_config(sigma_min: float, sigma_max: float, steps: int = TRAIN_STEPS) -> dict[str, Any]:
    """diffusers scheduler config (DDPM/DDIM/Euler/DPM++) whose index t has noise level sigma_t, v-prediction."""
    log_sigmas = _log_sigma(torch.arange(steps), sigma_min, sigma_max, steps)  # (T,)
    alphas_cumprod = torch.sigmoid(-2 * log_sigmas)  # (T,) = 1 / (1 + sigma^2)
    previous = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])  # (T,)
    return {
        "num_train_timesteps": steps,
        "trained_betas": (1 - alphas_cumprod / previous).tolist(),
        "prediction_type": "v_prediction",
        "timestep_spacing": "linspace",  # first step at sigma_max, last at sigma_min
        "use_karras_sigmas": True,  # Euler and DPM++ step through Karras sigmas, as SVD samples
        "sigma_min": sigma_min,
        "sigma_max": sigma_max,
        "steps_offset": 0,
        "clip_sample": False,
        "set_alpha_to_one": True,
    }


def noise_condition(timestep: torch.Tensor, sigma_min: float, sigma_max: float,
                    steps: int = TRAIN_STEPS) -> torch.Tensor:
    """SVD's ``c_noise = log(sigma_t) / 4`` for schedule indices ``t`` ``(B,)``, fractional ones included."""
    return (_log_sigma(timestep, sigma_min, sigma_max, steps) / 4).float()  # (B,)
