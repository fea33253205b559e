"""LPIPS (Zhang et al. 2018) with a VGG16 feature net defined here: no torchvision, no download.

Expected weights: one safetensors file ``lpips_vgg16.safetensors`` in the folder
``options.metric.lpips.weights`` names, holding

* ``features.{0,2,5,7,10,12,14,17,19,21,24,26,28}.weight`` / ``.bias``: the 13 convolutions of
  VGG16 ``features`` (3x3, padding 1), under exactly the names torchvision's ``vgg16().state_dict()``
  uses; ReLU after each, 2x2 max-pooling between the five stages;
* ``lin{0..4}.model.1.weight``, each ``(1, C_k, 1, 1)``: the LPIPS channel weights, under exactly the
  names of the ``lpips`` package's ``weights/v0.1/vgg.pth``.

Converting the published weights is a merge of those two state dicts saved with
``safetensors.torch.save_file``. Stage widths are read from the heads, so smaller VGG-shaped nets
(tests) load the same way.

Distance of two images: the features after relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3 of both,
each unit-normalised over channels, squared difference, weighted per channel by the head, averaged
over space, summed over the five taps. 0 for identical images; lower is more alike.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


from .loading import device_of, load_strict, read_tensors, take, weights_file

FILENAME = "lpips_vgg16.safetensors"
LAYOUT = "VGG16 `features.N.weight/bias` and LPIPS `linK.model.1.weight` tensors"
VGG16_DEPTHS = (2, 2, 3, 3, 3)  # convolutions per stage
SHIFT = (-0.030, -0.088, -0.188)  # LPIPS ScalingLayer: [-1, 1] input -> ImageNet statistics
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10


def vgg16_features(widths: tuple[int, ...]) -> tuple[nn.Sequential, list[int]]:
    """VGG16 ``features`` up to relu5_3 with torchvision's layer indices, and the indices of the five LPIPS taps."""
    layers: list[nn.Module] = []
    taps: list[int] = []
    channels = 3
    for stage, (width, depth) in enumerate(zip(widths, VGG16_DEPTHS, strict=True)):
        if stage:
            layers.append(nn.MaxPool2d(2, 2))
        for _ in range(depth):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
            channels = width
        taps.append(len(layers) - 1)  # the stage's last ReLU: 3, 8, 15, 22, 29
    return nn.Sequential(*layers), taps


class LinearHead(nn.Module):
    """LPIPS' NetLinLayer: a bias-free 1x1 conv to one channel, stored as ``model.1.weight``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(0.0), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LPIPS(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (64, 128, 256, 512, 512)) -> None:
        super().__init__()
        self.features, self.taps = vgg16_features(widths)  # state-dict names ``features.N.*`` as in torchvision
        for k, width in enumerate(widths):
            self.add_module(f"lin{k}", LinearHead(width))
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)

    def heads(self) -> list[LinearHead]:
        return [getattr(self, f"lin{k}") for k in range(len(self.taps))]

    def embed(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised tap features of ``(N, 3, H, W)`` images in [-1, 1]."""
        x, feats = (images - self.shift) / self.scale, []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                feats.append(x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS))  # (N, C_k, H/2**k, W/2**k)
        return feats

    def compare(self, feats: list[torch.Tensor], a: list[int], b: list[int]) -> torch.Tensor:
        """LPIPS between images ``a[i]`` and ``b[i]`` of an :meth:`embed` batch: ``(len(a),)``."""
        total = 0
        for f, head in zip(feats, self.heads()):
            total = total + head((f[a] - f[b]) ** 2).mean(dim=(1, 2, 3))  # (P,)
        return total

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS of two ``(N, 3, H, W)`` batches, pairwise: ``(N,)``."""
        n = len(x)
        return self.compare(self.embed(torch.cat([x, y])), list(range(n)), list(range(n, 2 * n)))


def load_lpips(path: Any) -> LPIPS:
    """An :class:`LPIPS` from a safetensors file in the layout of the module docstring."""
    tensors = read_tensors(path)
    widths = tuple(int(take(tensors, f"lin{k}.model.1.weight", path, 4).shape[1]) for k in range(len(VGG16_DEPTHS)))
    model = LPIPS(widths)
    return load_strict(model, tensors, path, "VGG16 LPIPS", "flashctl_metrics.lpips")


class LpipsMetric:
    """``first_frame``: LPIPS(reference, frame 0); ``flicker``: mean LPIPS of consecutive frames."""

    def __init__(self, model: LPIPS, device: str = "cpu") -> None:
        self.model, self.device = model.to(device), device

    @torch.no_grad()
    def __call__(self, generated: torch.Tensor, *, reference: torch.Tensor,
                 target: torch.Tensor | None = None) -> dict[str, float]:
        frames = len(generated)
        images = torch.cat([reference[None], generated]).to(self.device, torch.float32)  # (F+1, 3, H, W)
        feats = self.model.embed(images)
        scores = {"first_frame": float(self.model.compare(feats, [0], [1])[0])}
        if frames >= 2:
            steps = self.model.compare(feats, list(range(1, frames)), list(range(2, frames + 1)))  # (F-1,)
            scores["flicker"] = float(steps.mean())
        return scores


def build(options: Any, ctx: Any) -> LpipsMetric:
    path = weights_file(options.weights, ctx, metric="lpips", filename=FILENAME, layout=LAYOUT)
    return LpipsMetric(load_lpips(path), device_of(ctx))
