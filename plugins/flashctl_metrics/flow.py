"""Dense optical flow between consecutive frames: pyramidal Lucas-Kanade, pure torch.

Each colour channel of each frame is normalised to zero mean and unit standard deviation before
the flow is estimated, so a whole-frame change of brightness, contrast or white balance (a gain and
an offset per channel) leaves the normalised frames, and the flow, unchanged. The least-squares
system of every pixel sums the channels' constraints over a gaussian window; a small ridge term
keeps textureless regions at zero flow instead of amplifying noise. Coarse-to-fine over a 2x
pyramid, with a few warped refinements per level, follows displacements of several pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

RIDGE = 0.05  # added to the structure tensor's diagonal (normalised intensity units squared)
MIN_FLOW = 0.01  # pixels: shorter vectors are rounding in the warps, not motion, and are set to zero


def normalise_channels(video: torch.Tensor) -> torch.Tensor:
    """Per-frame, per-channel zero mean and unit std of ``(N, C, H, W)``: same shape."""
    x = video.float()
    x = x - x.mean(dim=(2, 3), keepdim=True)
    return x / x.std(dim=(2, 3), keepdim=True).clamp_min(1e-3)


def _gaussian(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable gaussian blur of ``(N, C, H, W)`` with replicate padding: same shape."""
    radius = max(1, round(2 * sigma))
    taps = torch.exp(-(torch.arange(-radius, radius + 1, dtype=x.dtype) ** 2) / (2 * sigma**2))
    taps = (taps / taps.sum()).to(x.device)  # (2r+1,)
    channels = x.shape[1]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), taps.view(1, 1, 1, -1).expand(channels, 1, 1, -1),
                 groups=channels)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), taps.view(1, 1, -1, 1).expand(channels, 1, -1, 1),
                    groups=channels)


def _gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences of ``(N, C, H, W)`` along x and y: two tensors of the same shape."""
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")  # (N, C, H+2, W+2)
    gx = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2
    gy = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2
    return gx, gy


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``image (N, C, H, W)`` sampled at ``pixel + flow (N, 2, H, W)`` (dx, dy in pixels), bilinear: ``(N, C, H, W)``."""
    n, _, height, width = image.shape
    ys, xs = torch.meshgrid(torch.arange(height, dtype=flow.dtype, device=flow.device),
                            torch.arange(width, dtype=flow.dtype, device=flow.device), indexing="ij")  # (H, W) each
    x = (xs + flow[:, 0]) * 2 / max(width - 1, 1) - 1  # (N, H, W) in [-1, 1]
    y = (ys + flow[:, 1]) * 2 / max(height - 1, 1) - 1
    return F.grid_sample(image, torch.stack([x, y], dim=-1), mode="bilinear", padding_mode="border",
                         align_corners=True)


def _refine(first: torch.Tensor, second: torch.Tensor, flow: torch.Tensor, sigma: float,
            iterations: int) -> torch.Tensor:
    """Lucas-Kanade updates of ``flow (N, 2, H, W)`` from ``first`` to ``second`` (both ``(N, C, H, W)``)."""
    gx, gy = _gradients(first)  # (N, C, H, W) each
    sxx = _gaussian((gx * gx).sum(1, keepdim=True), sigma) + RIDGE  # (N, 1, H, W)
    syy = _gaussian((gy * gy).sum(1, keepdim=True), sigma) + RIDGE
    sxy = _gaussian((gx * gy).sum(1, keepdim=True), sigma)
    det = sxx * syy - sxy**2  # > 0 thanks to the ridge
    for _ in range(iterations):
        dt = warp(second, flow) - first  # (N, C, H, W)
        bx = -_gaussian((gx * dt).sum(1, keepdim=True), sigma)  # (N, 1, H, W)
        by = -_gaussian((gy * dt).sum(1, keepdim=True), sigma)
        flow = flow + torch.cat([syy * bx - sxy * by, sxx * by - sxy * bx], dim=1) / det  # (N, 2, H, W)
    return flow


def pair_flow(first: torch.Tensor, second: torch.Tensor, *, levels: int = 3, sigma: float = 1.5,
              iterations: int = 3) -> torch.Tensor:
    """Flow from ``first`` to ``second`` (``(N, C, H, W)`` each, already normalised): ``(N, 2, H, W)`` in pixels.

    ``first[p] ~ second[p + flow[p]]``. Levels stop before a side would drop below 8 pixels.
    """
    pyramid = [(first, second)]
    while len(pyramid) < levels and min(pyramid[-1][0].shape[-2:]) >= 16:
        a, b = pyramid[-1]
        pyramid.append((F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)))
    a, b = pyramid[-1]
    flow = torch.zeros(a.shape[0], 2, *a.shape[-2:], dtype=a.dtype, device=a.device)  # (N, 2, h, w)
    for level, (a, b) in enumerate(reversed(pyramid)):
        if level:  # twice the resolution, twice the displacement
            flow = 2 * F.interpolate(flow, size=a.shape[-2:], mode="bilinear", align_corners=False)
        flow = _refine(a, b, flow, sigma, iterations)
    return flow


def video_flow(video: torch.Tensor, **options) -> torch.Tensor:
    """Flow between consecutive frames of ``(F, C, H, W)`` in [-1, 1]: ``(F-1, 2, H, W)`` in pixels.

    Vectors shorter than ``MIN_FLOW`` are zero, so identical frames have exactly zero flow.
    """
    frames = normalise_channels(video)  # (F, C, H, W)
    flow = pair_flow(frames[:-1], frames[1:], **options)  # (F-1, 2, H, W)
    return flow * (flow.norm(dim=1, keepdim=True) >= MIN_FLOW)
