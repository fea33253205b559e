"""FLASH composed from a backbone: the LAMP-style training loss and the sampling loop.

Frame 0 of every clip is the reference: its latent is never noised in training, is excluded
from the loss, and is re-imposed at every sampling step. With strong augmentation, training runs
the paired batch ``[x; x~]`` through one denoiser call with the noise and timestep of ``x``
repeated (:func:`paired_denoising_loss`); the Motion Alignment Module's processors, when
installed (:mod:`flashctl.model.motion_alignment`), are active during that call (the train loop
keeps them active through backward too, which gradient checkpointing re-runs forwards in).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from .interfaces import Backbone, Decoder
from .motion_alignment import aligned
from .objectives import Objective


def denoising_loss(backbone: Backbone, objective: Objective, latents: torch.Tensor, noise: torch.Tensor,
                   timesteps: torch.Tensor, prompt_emb: torch.Tensor) -> torch.Tensor:
    """Per-video weighted MSE ``(B,)`` on frames 1..F-1; frame 0 enters the denoiser clean."""
    noisy = objective.add_noise(latents, noise, timesteps)  # (B, F, c, h, w)
    noisy = torch.cat([latents[:, :1], noisy[:, 1:]], dim=1)  # frame 0 stays the clean reference
    context = prompt_emb.expand(latents.shape[0], -1, -1)  # (B, seq, dim)
    pred = backbone.denoise(noisy, timesteps, context)  # (B, F, c, h, w)
    target = objective.target(latents, noise, timesteps)
    mse = F.mse_loss(pred[:, 1:].float(), target[:, 1:].float(), reduction="none").flatten(1).mean(1)  # (B,)
    return mse * objective.loss_weight(timesteps).to(mse)


def paired_denoising_loss(backbone: Backbone, objective: Objective, latents: torch.Tensor, augmented: torch.Tensor,
                          noise: torch.Tensor, timesteps: torch.Tensor,
                          prompt_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-video losses ``(B,)`` of x and of x~ from ONE denoiser call on ``[x; x~]``, MAM processors active.

    ``latents`` x and ``augmented`` x~ are ``(B, F, c, h, w)``; both get ``noise`` and ``timesteps`` (drawn for x).
    """
    b = latents.shape[0]
    both = torch.cat([latents, augmented])  # (2B, F, c, h, w): originals first
    context = prompt_emb.expand(b, -1, -1).repeat(2, 1, 1)  # (2B, seq, dim)
    with aligned(backbone.unet):
        losses = denoising_loss(backbone, objective, both, noise.repeat(2, 1, 1, 1, 1), timesteps.repeat(2),
                                context)  # (2B,)
    return losses[:b], losses[b:]


def training_loss(backbone: Backbone, batch_latents: torch.Tensor, prompt_emb: torch.Tensor,
                  generator: torch.Generator, augmented: torch.Tensor | None = None,
                  augmented_weight: float = 1.0) -> torch.Tensor:
    """Mean denoising loss of clips x ``(B, F, c, h, w)``; ``prompt_emb`` is ``(1 or B, seq, dim)``.

    With ``augmented`` x~ (same shape): ``mean L(x) + augmented_weight * mean L(x~)`` from the paired batch.
    """
    objective = backbone.objective
    noise, timesteps = objective.draw(batch_latents, generator)
    if augmented is None:
        return denoising_loss(backbone, objective, batch_latents, noise, timesteps, prompt_emb).mean()
    loss, loss_aug = paired_denoising_loss(backbone, objective, batch_latents, augmented, noise, timesteps,
                                           prompt_emb)
    return loss.mean() + augmented_weight * loss_aug.mean()


@torch.no_grad()
def sample_latents(backbone: Backbone, reference_latent: torch.Tensor, prompt_emb: torch.Tensor, frames: int,
                   steps: int, scheduler: Any, guidance_scale: float = 1.0, negative_emb: torch.Tensor | None = None,
                   generator: torch.Generator | None = None, start: str = "noise",
                   on_step: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Denoise ``frames`` latents whose frame 0 is ``reference_latent`` ``(B, c, h, w)`` -> ``(B, F, c, h, w)``.

    ``on_step(i, total)`` is called after each denoising step (``i`` = 1..total), for progress.

    ``start``: ``"noise"`` starts every later frame from pure noise; ``"reference"`` from the reference latent
    noised to the first timestep, which is what training showed the denoiser there: a schedule whose last
    step keeps some signal (SD's linear betas keep sqrt(abar) of about 0.05) never trained on pure noise.
    """
    b = reference_latent.shape[0]
    ref = reference_latent[:, None].to(backbone.device, backbone.dtype)  # (B, 1, c, h, w)
    guided = guidance_scale > 1.0
    if guided and negative_emb is None:
        raise ValueError("guidance_scale > 1 needs negative_emb (encode the negative prompt, '' by default)")
    context = prompt_emb.expand(b, -1, -1)  # (B, seq, dim)
    if guided:
        context = torch.cat([negative_emb.expand(b, -1, -1), context])  # (2B, seq, dim)
    scheduler.set_timesteps(steps, device=backbone.device)
    shape = (b, frames, *reference_latent.shape[1:])
    noise = torch.randn(shape, generator=generator).to(backbone.device, backbone.dtype)  # (B, F, c, h, w)
    if start == "reference":  # q(z_T | z_0 = reference) for every frame
        latents = backbone.objective.start(scheduler, ref.expand(shape).contiguous(), noise)
    elif start == "noise":
        latents = noise * scheduler.init_noise_sigma
    else:
        raise ValueError(f"start must be 'noise' or 'reference', not {start!r}")
    latents = torch.cat([ref, latents[:, 1:]], dim=1)  # (B, F, c, h, w)
    timesteps = scheduler.timesteps
    for i, t in enumerate(timesteps):
        model_in = torch.cat([ref, scheduler.scale_model_input(latents, t)[:, 1:]], dim=1)
        if guided:
            model_in = torch.cat([model_in, model_in])  # (2B, F, c, h, w)
        pred = backbone.denoise(model_in, t.expand(model_in.shape[0]), context)
        if guided:
            uncond, cond = pred.chunk(2)
            pred = uncond + guidance_scale * (cond - uncond)
        latents = scheduler.step(pred, t, latents, generator=generator).prev_sample
        latents = torch.cat([ref, latents[:, 1:]], dim=1)  # re-impose the reference
        if on_step is not None:
            on_step(i + 1, len(timesteps))
    return latents


@torch.no_grad()
def sample(backbone: Backbone, decoder: Decoder, reference_image: torch.Tensor, prompt_emb: torch.Tensor, frames: int,
           steps: int, scheduler: Any, guidance_scale: float = 1.0, negative_emb: torch.Tensor | None = None,
           generator: torch.Generator | None = None, anchor: bool = False, start: str = "noise",
           on_step: Callable[[int, int], None] | None = None, anchor_tolerance: float = 0.0) -> torch.Tensor:
    """Animate ``reference_image`` ``(B, 3, H, W)`` in [-1, 1] -> video ``(B, F, 3, H, W)`` starting from it.

    ``frames`` counts video frames; the latents hold :func:`latent_frames` of them.

    ``anchor``: return :func:`anchor_to_reference` of the decoded video (frame 0 is the image itself), with
    ``anchor_tolerance`` (0 = every pixel).
    ``on_step(i, total)``: called after each denoising step (:func:`sample_latents`).
    """
    reference_latent = backbone.encode_video(reference_image[:, None])[:, 0]  # (B, c, h, w)
    latents = sample_latents(backbone, reference_latent, prompt_emb, latent_frames(backbone, frames), steps, scheduler,
                             guidance_scale, negative_emb, generator, start, on_step)
    reference_image = reference_image.to(backbone.device, backbone.dtype)
    video = decoder.decode(latents, reference_image)  # (B, F, 3, H, W)
    return anchor_to_reference(video, reference_image, anchor_tolerance) if anchor else video


def latent_frames(backbone: Backbone, frames: int) -> int:
    """Latent frames holding ``frames`` video frames: the backbone's optional ``latent_frames(frames)`` when its VAE
    compresses time (and refuses counts it cannot hold), else ``frames``."""
    count = getattr(backbone, "latent_frames", None)
    return frames if count is None else count(frames)


def anchor_to_reference(video: torch.Tensor, reference_image: torch.Tensor, tolerance: float = 0.0) -> torch.Tensor:
    """Put the exact reference back where the video stays still: video ``(B, F, 3, H, W)``, reference
    ``(B, 3, H, W)``, both in [-1, 1].

    Where a pixel stays still, ``reference + (video_f - video_0)``: the decoder's systematic error (colour
    drift, blur) is the same in every frame, so it cancels; frame 0 becomes the reference exactly. Where
    something moves, adding frame 0's error back would pin a sharp ghost of the starting pose (measured: a
    bow's joint tracks drop from 0.84 to 0.11 correlation with the real ones), so with ``tolerance`` > 0 a
    pixel whose change from frame 0 (largest channel, grown by 2 px) is ``d`` takes the decoded frame with
    weight ``1 - exp(-(d / tolerance)^2)``. ``tolerance = 0`` anchors every pixel.
    """
    change = video - video[:, :1]  # (B, F, 3, H, W)
    anchored = (reference_image[:, None].to(video) + change).clamp(-1, 1)
    if tolerance <= 0:
        return anchored
    b, f = video.shape[:2]
    size = change.abs().amax(2).flatten(0, 1)[:, None]  # (B*F, 1, H, W)
    size = F.max_pool2d(size, 5, stride=1, padding=2).view(b, f, 1, *video.shape[-2:])  # (B, F, 1, H, W)
    still = torch.exp(-(size / tolerance) ** 2)  # 1 where nothing moves (all of frame 0)
    return still * anchored + (1 - still) * video.clamp(-1, 1)
