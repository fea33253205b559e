"""Strong clip augmentations: ``aug(video, generator, **options) -> video``.

Videos are ``(F, C, H, W)`` float tensors in [-1, 1] with C = 3 (RGB). Every random parameter is
drawn once per clip from ``generator`` and applied identically to every frame; nothing depends on
a single frame's statistics, so ``aug(video[perm]) == aug(video)[perm]`` for any frame order.
Outputs are clamped to [-1, 1].
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights


def _uniform(generator: torch.Generator, low: torch.Tensor | float, high: torch.Tensor | float,
             n: int = 1) -> torch.Tensor:
    u = torch.rand(n, generator=generator, device=generator.device).cpu()  # (n,)
    return low + (high - low) * u


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    """One integer drawn uniformly from ``[low, high]`` (both included)."""
    return int(torch.randint(low, high + 1, (1,), generator=generator, device=generator.device).item())


def _unit(video: torch.Tensor) -> torch.Tensor:
    return (video + 1) / 2  # [-1, 1] -> [0, 1]


def _signed(unit: torch.Tensor) -> torch.Tensor:
    return (unit * 2 - 1).clamp(-1, 1)  # [0, 1] -> [-1, 1]


def _luma(unit: torch.Tensor) -> torch.Tensor:
    weights = unit.new_tensor(LUMA).view(1, 3, 1, 1)
    return (unit * weights).sum(dim=1, keepdim=True)  # (F, 1, H, W)


def color_jitter(video: torch.Tensor, generator: torch.Generator, *, brightness: float, contrast: float,
                 saturation: float) -> torch.Tensor:
    """Scale brightness, contrast (about the whole clip's mean grey) and saturation."""
    spread = torch.tensor([brightness, contrast, saturation])
    b, c, s = _uniform(generator, 1 - spread, 1 + spread, 3).tolist()
    x = (_unit(video) * b).clamp(0, 1)  # (F, 3, H, W)
    mean = _luma(x).mean()  # over the whole clip, so every frame gets the same map
    x = ((x - mean) * c + mean).clamp(0, 1)
    grey = _luma(x)  # (F, 1, H, W)
    return _signed((x - grey) * s + grey)


def hue_rotate(video: torch.Tensor, generator: torch.Generator, *, min_degrees: float,
               max_degrees: float) -> torch.Tensor:
    """Rotate colours around the grey axis by a random angle with a random sign."""
    angle, sign = _uniform(generator, 0.0, 1.0, 2).tolist()
    theta = math.radians(min_degrees + (max_degrees - min_degrees) * angle) * (1 if sign < 0.5 else -1)
    cos, sin = math.cos(theta), math.sin(theta)
    k = 1 / math.sqrt(3)
    axis = torch.full((3,), k)
    cross = torch.tensor([[0, -k, k], [k, 0, -k], [-k, k, 0]])
    rotation = cos * torch.eye(3) + sin * cross + (1 - cos) * torch.outer(axis, axis)  # (3, 3) Rodrigues
    x = torch.einsum("ij,fjhw->fihw", rotation.to(video), _unit(video))
    return _signed(x)


def channel_shuffle(video: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Permute the channels with one of the C! - 1 permutations that are not the identity."""
    perms = list(itertools.permutations(range(video.shape[1])))[1:]  # the first one is the identity
    return video[:, list(perms[_randint(generator, 0, len(perms) - 1)])]


def grayscale(video: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Replace every pixel by its luminance (no randomness)."""
    return _signed(_luma(_unit(video)).expand_as(video))


def invert(video: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The photographic negative (no randomness)."""
    return (-video).clamp(-1, 1)


def posterize(video: torch.Tensor, generator: torch.Generator, *, min_bits: int, max_bits: int) -> torch.Tensor:
    """Quantise every channel to ``2**bits`` levels, ``bits`` drawn per clip."""
    bits = _randint(generator, min_bits, max_bits)
    levels = 2**bits
    x = torch.floor(_unit(video) * levels).clamp(max=levels - 1) / (levels - 1)
    return _signed(x)


def blur(video: torch.Tensor, generator: torch.Generator, *, min_sigma: float, max_sigma: float) -> torch.Tensor:
    """Separable gaussian blur, the same kernel on every frame, reflected borders."""
    sigma = _uniform(generator, min_sigma, max_sigma).item()
    _, channels, height, width = video.shape
    radius = min(math.ceil(3 * sigma), height - 1, width - 1)
    taps = torch.arange(-radius, radius + 1, dtype=video.dtype, device=video.device)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()  # (2r+1,)
    x = F.pad(video, (radius, radius, radius, radius), mode="reflect")  # (F, C, H+2r, W+2r)
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)  # (F, C, H+2r, W)
    x = F.conv2d(x, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)  # (F, C, H, W)
    return x.clamp(-1, 1)


def noise(video: torch.Tensor, generator: torch.Generator, *, std: float) -> torch.Tensor:
    """Add one gaussian noise pattern, drawn per clip, to every frame."""
    shape = video.shape[1:]
    pattern = torch.randn(shape, generator=generator, device=generator.device).to(video) * std  # (C, H, W)
    return (video + pattern).clamp(-1, 1)


def texture(video: torch.Tensor, generator: torch.Generator, *, min_strength: float, max_strength: float,
            cells: int) -> torch.Tensor:
    """Blend a procedural pattern (smooth colour blotches plus a coloured grating) over every frame."""
    _, channels, height, width = video.shape
    draws = torch.rand(channels * cells * cells + channels + 4, generator=generator, device=generator.device)
    draws = draws.cpu().to(video.dtype)
    grid, colour, (strength, angle, freq, phase) = draws.split([channels * cells * cells, channels, 4])
    blotches = F.interpolate(grid.view(1, channels, cells, cells) * 2 - 1, size=(height, width),
                             mode="bicubic", align_corners=False)[0]  # (C, H, W)
    ys = torch.linspace(0, 1, height, dtype=video.dtype).view(-1, 1)
    xs = torch.linspace(0, 1, width, dtype=video.dtype).view(1, -1)
    turns = 1 + freq * (cells - 1)  # stripes across the frame, at most one per cell
    theta = angle * math.pi
    wave = torch.sin(2 * math.pi * (turns * (xs * torch.cos(theta) + ys * torch.sin(theta)) + phase))  # (H, W)
    grating = wave * (colour * 2 - 1).view(-1, 1, 1)  # (C, H, W)
    pattern = (0.6 * blotches + 0.4 * grating).clamp(-1, 1).to(video.device)  # (C, H, W)
    alpha = min_strength + (max_strength - min_strength) * float(strength)
    return ((1 - alpha) * video + alpha * pattern).clamp(-1, 1)


def hflip(video: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror left-right. Geometric: the motion is mirrored too, so it must not feed MAM."""
    return video.flip(-1)


def compose(augs: Sequence[Callable], video: torch.Tensor, generator: torch.Generator,
            max_ops: int = 2) -> torch.Tensor:
    """Apply between 1 and ``max_ops`` distinct augmentations from ``augs``, chosen at random."""
    if not augs:
        return video
    count = _randint(generator, 1, min(max_ops, len(augs)))
    order = torch.randperm(len(augs), generator=generator, device=generator.device).cpu()[:count]
    for index in order.tolist():
        video = augs[index](video, generator)
    return video
