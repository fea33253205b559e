"""Fréchet video distance: a Gaussian fitted to video features of the generated set vs. the real set.

FVD is a distance between two *distributions*, so it cannot be scored one sample at a time. The
metric accumulates: each call (or :meth:`FrechetVideoDistance.update`) embeds one generated video and
its real continuation and returns ``{}``; :meth:`~FrechetVideoDistance.compute` returns ``{"fvd": d}``
once at least two pairs were seen. It is registered with ``aggregate=True`` so that the evaluation
pipeline knows to call ``compute()`` after the last sample.

Expected weights: ``fvd_video_net.safetensors`` in the folder ``options.metric.fvd.weights`` names,
holding ``convs.{i}.weight`` ``(C_i, C_{i-1}, k, k, k)`` and ``convs.{i}.bias`` ``(C_i,)`` for
i = 0, 1, ... (C_{-1} = 3): :class:`VideoFeatureNet`, a small I3D-like stack of 3-D convolutions
(padding k // 2, ReLU, 2x spatial max-pooling between stages, global average pooling at the end),
fed ``(1, 3, F, size, size)`` clips in [-1, 1] like I3D. Widths and kernel sizes are read from the
file. Published FVD numbers use Kinetics-400 I3D features; that network (Inception-3D mixed blocks) is
not this one, so its weights do not convert by renaming: a plugin would register its own net class
and reuse :func:`frechet_distance` and :class:`FrechetVideoDistance` with it. Numbers from different
feature nets are not comparable.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from flashctl.errors import FlashctlError

from .loading import device_of, load_strict, read_tensors, take, weights_file

FILENAME = "fvd_video_net.safetensors"
LAYOUT = "3-D conv tensors `convs.N.weight` (C_out, C_in, k, k, k) and `convs.N.bias`"


def gaussian(feats: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` of ``(N, D)`` features, in float64."""
    x = torch.as_tensor(feats, dtype=torch.float64)
    if x.ndim != 2 or len(x) < 2:
        raise FlashctlError(f"a Fréchet distance needs at least 2 feature vectors of shape (N, D), got {tuple(x.shape)}",
                            hint="FVD compares distributions: score many videos (tens to hundreds)")
    mu = x.mean(dim=0)  # (D,)
    centred = x - mu  # (N, D)
    return mu, centred.T @ centred / (len(x) - 1)  # (D,), (D, D)


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a symmetric positive semi-definite matrix (eigenvalues clipped at 0)."""
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)  # (D,), (D, D)
    return vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance_gaussians(mu_a: Any, cov_a: Any, mu_b: Any, cov_b: Any) -> float:
    """||mu_a - mu_b||^2 + tr(A) + tr(B) - 2 tr((A^1/2 B A^1/2)^1/2), in float64; never negative."""
    mu_a, mu_b, cov_a, cov_b = (torch.as_tensor(t, dtype=torch.float64) for t in (mu_a, mu_b, cov_a, cov_b))
    root_a = _sqrt_psd(cov_a)  # (D, D)
    middle = root_a @ cov_b @ root_a  # (D, D), symmetric PSD, same spectrum as A B
    cross = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    distance = (mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    return max(0.0, float(distance))


def frechet_distance(feats_a: Any, feats_b: Any) -> float:
    """Fréchet distance of Gaussians fitted to two ``(N, D)`` / ``(M, D)`` feature sets (N, M >= 2)."""
    return frechet_distance_gaussians(*gaussian(feats_a), *gaussian(feats_b))


class VideoFeatureNet(nn.Module):
    """Stacked ``Conv3d`` + ReLU stages, 2x spatial max-pooling between them, global average pool."""

    def __init__(self, widths: tuple[int, ...], kernels: tuple[int, ...]) -> None:
        super().__init__()
        ins = (3, *widths[:-1])
        self.convs = nn.ModuleList(nn.Conv3d(c_in, c_out, k, padding=k // 2)
                                   for c_in, c_out, k in zip(ins, widths, kernels, strict=True))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """``(B, 3, F, H, W)`` in [-1, 1] -> ``(B, widths[-1])``."""
        x = clips
        for i, conv in enumerate(self.convs):
            if i:
                x = F.max_pool3d(x, kernel_size=(1, 2, 2), ceil_mode=True)  # (B, C, F, H/2, W/2)
            x = F.relu(conv(x))  # (B, C_i, F, h, w)
        return x.mean(dim=(2, 3, 4))  # (B, C_last)


def load_video_net(path: Any) -> VideoFeatureNet:
    """A :class:`VideoFeatureNet` from a safetensors file in the layout of the module docstring."""
    tensors = read_tensors(path)
    stages = max(1, sum(name.startswith("convs.") and name.endswith(".weight") for name in tensors))
    shapes = [tuple(take(tensors, f"convs.{i}.weight", path, 5).shape) for i in range(stages)]
    model = VideoFeatureNet(tuple(s[0] for s in shapes), tuple(s[2] for s in shapes))
    return load_strict(model, tensors, path, "FVD video-net", "flashctl_metrics.fvd")


class FrechetVideoDistance:
    """Accumulates features of (generated, real) video pairs; :meth:`compute` gives ``{"fvd": d}``."""

    def __init__(self, net: VideoFeatureNet, size: int, device: str = "cpu") -> None:
        self.net, self.size, self.device = net.to(device), size, device
        self.generated: list[torch.Tensor] = []  # (D,) float64 per video
        self.real: list[torch.Tensor] = []

    @torch.no_grad()
    def features(self, video: torch.Tensor) -> torch.Tensor:
        """Features of one ``(F, 3, H, W)`` video in [-1, 1]: ``(D,)`` float64."""
        frames = F.interpolate(video.to(self.device, torch.float32), size=(self.size, self.size),
                               mode="bilinear", antialias=True, align_corners=False)  # (F, 3, S, S)
        return self.net(frames.transpose(0, 1)[None])[0].double().cpu()  # (D,)

    def update(self, generated: torch.Tensor, target: torch.Tensor) -> None:
        self.generated.append(self.features(generated))
        self.real.append(self.features(target))

    def __call__(self, generated: torch.Tensor, *, reference: torch.Tensor,
                 target: torch.Tensor | None = None) -> dict[str, float]:
        """Per sample: accumulate (when there is a target); the score comes from :meth:`compute`."""
        if target is not None:
            self.update(generated, target)
        return {}

    def compute(self) -> dict[str, float]:
        """``{"fvd": d}`` over every pair seen so far; ``{}`` with fewer than two."""
        if len(self.generated) < 2:
            return {}
        return {"fvd": frechet_distance(torch.stack(self.generated), torch.stack(self.real))}


def build(options: Any, ctx: Any) -> FrechetVideoDistance:
    path = weights_file(options.weights, ctx, metric="fvd", filename=FILENAME, layout=LAYOUT)
    return FrechetVideoDistance(load_video_net(path), options.size, device_of(ctx))
