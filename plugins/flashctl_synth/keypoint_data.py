"""Labelled frames for the keypoint estimator, the degradations it must survive, and its accuracy (PCK).

Frames come from every action at the phases a short, sparsely sampled clip visits (each clip starts at a
random phase). The degradations stand in for generated frames: gaussian blur, down-up sampling, noise,
colour shifts, and a round trip through the shipped tiny VAE (what the embedded backbone decodes with).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .actions import ACTIONS
from .keypoint_net import SIZE, KeypointNet, estimate, pck, to_tensor
from .render import render_clip


def render_frames(split: str, clips: int, seed: int = 0, per_clip: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``clips`` clips cycling through the actions: frames (N, 3, 64, 64) in [-1, 1], keypoints (N, J, 2), heights (N,)."""
    frames, points, heights = [], [], []
    for i in range(clips):
        video, meta = render_clip(list(ACTIONS)[i % len(ACTIONS)], frames=per_clip, size=SIZE, fps=2.5,
                                  seed=seed + i, split=split)       # video (per_clip, 64, 64, 3)
        frames.append(to_tensor(video))
        points.append(torch.tensor(meta["keypoints"]))
        heights.append(torch.full((per_clip,), meta["body"]["height"] * SIZE))
    return torch.cat(frames), torch.cat(points).float(), torch.cat(heights)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image of ``x`` (B, C, H, W) with its own ``sigma`` (B,) pixels (0 leaves it as it is)."""
    radius = 4
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype)                    # (K,)
    kernel = torch.exp(-taps ** 2 / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))  # (B, K)
    kernel = kernel / kernel.sum(-1, keepdim=True)
    b, c, h, w = x.shape
    rows = x.reshape(1, b * c, h, w)
    k = kernel.repeat_interleave(c, 0)                                          # (B*C, K)
    rows = F.conv2d(F.pad(rows, (radius, radius, 0, 0), mode="replicate"), k[:, None, None, :], groups=b * c)
    rows = F.conv2d(F.pad(rows, (0, 0, radius, radius), mode="replicate"), k[:, None, :, None], groups=b * c)
    return rows.reshape(b, c, h, w)


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random blur, down-up sampling, colour shifts and noise, per image: ``x`` (B, 3, H, W) in [-1, 1]."""
    b = x.shape[0]

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(b, *shape, generator=generator)

    blurred = torch.rand(b, generator=generator) < 0.5
    x = torch.where(blurred[:, None, None, None], gaussian_blur(x, uniform(0.3, 1.8)), x)
    coarse = torch.rand(b, generator=generator) < 0.25
    down_up = F.interpolate(F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True), size=x.shape[-2:],
                            mode="bilinear")
    x = torch.where(coarse[:, None, None, None], down_up, x)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)                                  # (B, 1, 1, 1)
    x = (x - mean) * uniform(0.6, 1.3, 1, 1, 1) + mean                          # contrast
    grey = x.mean(1, keepdim=True)                                              # (B, 1, H, W)
    x = grey + (x - grey) * uniform(0.3, 1.5, 1, 1, 1)                          # saturation
    x = x * uniform(0.8, 1.2, 3, 1, 1) + uniform(-0.2, 0.2, 3, 1, 1)            # per-channel gain and offset
    x = x + torch.randn(x.shape, generator=generator) * uniform(0, 0.08, 1, 1, 1)
    return x.clamp(-1, 1)


class VaeRoundTrip:
    """Encode and decode frames with the shipped tiny base's VAE (the embedded backbone's decoder)."""

    def __init__(self):
        from diffusers import AutoencoderKL
        from flashctl_animatediff.components import SHIPPED_TINY_BASE

        self.vae = AutoencoderKL.from_pretrained(SHIPPED_TINY_BASE, subfolder="vae").eval()

    def __call__(self, x: torch.Tensor, batch: int = 64) -> torch.Tensor:
        """``x`` (N, 3, H, W) in [-1, 1] -> the same shape, as the VAE reproduces it."""
        with torch.no_grad():
            return torch.cat([self.vae.decode(self.vae.encode(part).latent_dist.mode()).sample.clamp(-1, 1)
                              for part in x.split(batch)])


def accuracy(net: KeypointNet, clips: int = 64, seed: int = 10_000, vae: VaeRoundTrip | None = None) -> dict[str, float]:
    """PCK at 0.1 body height on held-out-pool frames of every action: clean, blurred (sigma 1 and 1.5 px), VAE."""
    frames, points, heights = render_frames("heldout", clips, seed)
    variants = {"clean": frames, "blur_1.0": gaussian_blur(frames, torch.full((len(frames),), 1.0)),
                "blur_1.5": gaussian_blur(frames, torch.full((len(frames),), 1.5))}
    if vae is not None:
        variants["vae"] = vae(frames)
    net.eval()
    return {f"pck_{name}": round(pck(estimate(x, net), points, heights), 4) for name, x in variants.items()}

