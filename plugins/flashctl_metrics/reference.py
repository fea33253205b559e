"""Metrics that compare generated frames with the reference image: PSNR, SSIM, colour histograms.

Inputs are floats in [-1, 1]; everything is computed on the [0, 1] scale.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2  # Wang et al. 2004 constants for a dynamic range of 1


def unit(x: torch.Tensor) -> torch.Tensor:
    return ((x.float() + 1) / 2).clamp(0, 1)


def psnr(a: torch.Tensor, b: torch.Tensor, max_psnr: float) -> float:
    """Peak signal-to-noise ratio in dB of two [0, 1] images; identical images give ``max_psnr``."""
    mse = float(((a - b) ** 2).mean())
    return max_psnr if mse == 0 else min(max_psnr, 10 * math.log10(1 / mse))


def gaussian_window(size: int, sigma: float) -> torch.Tensor:
    taps = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(taps**2) / (2 * sigma**2))
    g = g / g.sum()  # (size,)
    return torch.outer(g, g)  # (size, size)


def ssim(a: torch.Tensor, b: torch.Tensor, window: int, sigma: float) -> float:
    """Mean structural similarity of two ``(C, H, W)`` [0, 1] images, gaussian window, no padding."""
    channels, height, width = a.shape
    size = min(window, height - (height + 1) % 2, width - (width + 1) % 2)  # odd, fits the image
    w = gaussian_window(size, sigma).to(a).expand(channels, 1, size, size)  # (C, 1, k, k)

    def filt(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x[None], w, groups=channels)[0]  # (C, H-k+1, W-k+1)

    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a**2
    var_b = filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)
    den = (mu_a**2 + mu_b**2 + SSIM_C1) * (var_a + var_b + SSIM_C2)
    return float((num / den).mean())


def first_frame(generated: torch.Tensor, *, reference: torch.Tensor, target: torch.Tensor | None = None,
                ssim_window: int, ssim_sigma: float, max_psnr: float) -> dict[str, float]:
    """How faithfully the video starts at the reference image."""
    ref, first = unit(reference), unit(generated[0])  # (C, H, W) each
    return {"psnr": psnr(ref, first, max_psnr), "ssim": ssim(ref, first, ssim_window, ssim_sigma)}


def colour_histogram(frames: torch.Tensor, bins: int) -> torch.Tensor:
    """Joint colour histograms of ``(N, C, H, W)`` [0, 1] images, each summing to 1: ``(N, bins**C)``."""
    n, channels = frames.shape[:2]
    q = (frames * bins).long().clamp(max=bins - 1)  # (N, C, H, W) bin per channel
    place = bins ** torch.arange(channels, device=frames.device).view(1, -1, 1, 1)
    index = (q * place).sum(dim=1).flatten(1)  # (N, H*W) joint bin
    counts = torch.zeros(n, bins**channels, device=frames.device).scatter_add_(
        1, index, torch.ones_like(index, dtype=torch.float32))  # (N, bins**C)
    return counts / counts.sum(dim=1, keepdim=True)


def histogram_overlap(frames: torch.Tensor, reference: torch.Tensor, bins: int) -> torch.Tensor:
    """Histogram intersection (1 = same colours) of the reference with every frame of ``(F, C, H, W)``: ``(F,)``."""
    ref = colour_histogram(unit(reference)[None], bins)  # (1, B)
    return torch.minimum(ref, colour_histogram(unit(frames), bins)).sum(dim=1)  # (F,)


def appearance(generated: torch.Tensor, *, reference: torch.Tensor, target: torch.Tensor | None = None,
               bins: int) -> dict[str, float]:
    """Histogram intersection (1 = same colours) of the reference with every generated frame."""
    overlap = histogram_overlap(generated, reference, bins)  # (F,)
    return {"histogram_mean": float(overlap.mean()), "histogram_min": float(overlap.min())}
