"""A small keypoint estimator for the synthetic world: 64 px frames in, the 15 joints of :data:`.skeleton.JOINTS` out.

A fully convolutional net predicts one heatmap per joint on a 16 x 16 grid; a soft-argmax turns each into
a sub-pixel position. It was trained by ``scripts/train_keypoints.py`` on the ``pose`` appearance split
(random colours, which no evaluation uses) with blur, noise, colour and VAE-round-trip augmentation;
``weights/provenance.json`` records the command and its accuracy on the held-out pool.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .errors import SynthSettingError
from .skeleton import JOINTS

SIZE = 64  # the net's input side in pixels
WEIGHTS = Path(__file__).parent / "weights" / "keypoints.safetensors"
# head centre -> neck -> pelvis -> knee -> ankle along the bones, over the standing height (world.sample_body)
BONES_PER_HEIGHT = 0.85


def _block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class KeypointNet(nn.Module):
    def __init__(self, width: int = 32, joints: int = len(JOINTS)):
        super().__init__()
        self.body = nn.Sequential(
            _block(3, width, 2), _block(width, width),                              # 32 x 32
            _block(width, 2 * width, 2), _block(2 * width, 2 * width),              # 16 x 16
            _block(2 * width, 2 * width, dilation=2), _block(2 * width, 2 * width, dilation=4),
            _block(2 * width, 2 * width, dilation=8),
        )
        self.head = nn.Conv2d(2 * width, joints, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, 3, 64, 64) in [-1, 1] -> (B, J, 2) joint positions in input pixels, x right, y down."""
        logits = self.head(self.body(x))                                   # (B, J, h, w)
        b, j, h, w = logits.shape
        prob = logits.flatten(2).softmax(-1).view(b, j, h, w)              # (B, J, h, w)
        cell = x.shape[-1] / w                                             # input pixels per heatmap cell
        centres = (torch.arange(w, dtype=x.dtype, device=x.device) + 0.5) * cell  # (w,)
        xs = (prob.sum(2) * centres).sum(-1)                               # (B, J)
        ys = (prob.sum(3) * centres).sum(-1)                               # (B, J)
        return torch.stack([xs, ys], -1)


@lru_cache(maxsize=2)
def load_keypoint_net(path: Path = WEIGHTS) -> KeypointNet:
    """The shipped (or given) weights in eval mode; a missing or mismatched file is a one-line error naming it."""
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise SynthSettingError(f"keypoint weights {path} not found",
                                hint="reinstall flashctl, or train them: python scripts/train_keypoints.py")
    state = load_file(str(path))
    net = KeypointNet(width=state["body.0.0.weight"].shape[0])
    try:
        net.load_state_dict(state)
    except RuntimeError as error:
        raise SynthSettingError(f"keypoint weights {path}: {str(error).splitlines()[0]}") from None
    return net.eval()


def estimate(frames: torch.Tensor, net: KeypointNet | None = None) -> torch.Tensor:
    """``frames`` (F, 3, H, W) in [-1, 1] -> (F, J, 2) keypoints in the frames' own pixels (resized to 64 px)."""
    net = net or load_keypoint_net()
    height, width = frames.shape[-2:]
    x = frames.float()
    if (height, width) != (SIZE, SIZE):
        x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        points = net(x)                                                    # (F, J, 2) in 64 px
    return points * torch.tensor([width / SIZE, height / SIZE])


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """``frames`` (F, H, W, 3) uint8 -> (F, 3, H, W) float in [-1, 1]."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1


def body_height(points: torch.Tensor) -> torch.Tensor:
    """Standing height in pixels from one pose's bone lengths, ``points`` (J, 2) -> scalar (any pose, any view)."""
    p = dict(zip(JOINTS, points))
    legs = [(p[f"{s}_hip"] - p[f"{s}_knee"]).norm() + (p[f"{s}_knee"] - p[f"{s}_ankle"]).norm()
            for s in ("right", "left")]
    bones = (p["head"] - p["neck"]).norm() + (p["neck"] - p["pelvis"]).norm() + (legs[0] + legs[1]) / 2
    return bones / BONES_PER_HEIGHT


def pck(predicted: torch.Tensor, true: torch.Tensor, height: torch.Tensor, threshold: float = 0.1) -> float:
    """Fraction of joints within ``threshold`` body heights: ``predicted``/``true`` (N, J, 2), ``height`` (N,) px."""
    return ((predicted - true).norm(dim=-1) <= threshold * height[:, None]).float().mean().item()
