"""Strong augmentations: range, determinism, one transform for every frame, real appearance change."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from flashctl.errors import ConfigError
from flashctl.plugins import build_host

PRESERVING = ["color-jitter", "hue-rotate", "channel-shuffle", "grayscale", "invert", "posterize", "blur",
              "noise", "texture"]
PER_PIXEL = [n for n in PRESERVING if n != "blur"]  # output pixel depends only on the input pixel (and place)
RANDOM = ["color-jitter", "hue-rotate", "channel-shuffle", "posterize", "blur", "noise", "texture"]
FRAMES, SIZE = 6, 16


@pytest.fixture(scope="module")
def registry():
    return build_host().registry


def make(registry, name, **options):
    return registry.create("augmentation", name, options)


def moving_square(background: torch.Tensor, colour=(0.7, 0.6, 0.8), step: int = 2) -> torch.Tensor:
    """A 4x4 square moving right by ``step`` px per frame over a static background: (F, 3, H, W)."""
    video = background.expand(FRAMES, 3, SIZE, SIZE).clone()
    for t in range(FRAMES):
        video[t, :, 6:10, 1 + step * t:5 + step * t] = torch.tensor(colour).view(3, 1, 1)
    return video


def random_clip(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return moving_square(torch.rand(1, 3, SIZE, SIZE, generator=g) * 1.6 - 0.8)


def two_tone_clip() -> torch.Tensor:
    """Dark two-tone background, bright square: every augmentation keeps square and background apart."""
    background = torch.empty(1, 3, SIZE, SIZE)
    background[..., : SIZE // 2] = torch.tensor([-0.8, -0.6, -0.7]).view(3, 1, 1)
    background[..., SIZE // 2:] = torch.tensor([-0.5, -0.8, -0.4]).view(3, 1, 1)
    return moving_square(background)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registered_with_motion_flag(registry):
    flags = {s.name: s.traits.preserves_motion for s in registry.specs("augmentation")}
    assert {n for n, keep in flags.items() if keep} == set(PRESERVING)
    assert flags["hflip"] is False


def test_importing_the_plugin_does_not_import_torch():
    code = "import sys, flashctl_augment; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("name", PRESERVING + ["hflip"])
def test_shape_dtype_and_range(registry, name):
    video = random_clip()
    out = make(registry, name)(video, gen(1))
    assert out.shape == video.shape and out.dtype == video.dtype
    assert out.min() >= -1 and out.max() <= 1
    assert torch.equal(video, random_clip())  # the input is not modified in place


@pytest.mark.parametrize("name", RANDOM)
def test_deterministic_by_seed(registry, name):
    aug, video = make(registry, name), random_clip()
    assert torch.equal(aug(video, gen(3)), aug(video, gen(3)))
    outs = [aug(video, gen(seed)) for seed in range(6)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


@pytest.mark.parametrize("name", PRESERVING)
def test_same_transform_on_every_frame(registry, name):
    # Reordering the frames reorders the output and changes nothing else.
    aug, video = make(registry, name), random_clip()
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    assert torch.allclose(aug(video[perm], gen(7)), aug(video, gen(7))[perm], atol=1e-6)


@pytest.mark.parametrize("name", PER_PIXEL)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frame_differences_stay_where_the_motion_is(registry, name, seed):
    video = two_tone_clip()
    out = make(registry, name)(video, gen(seed))
    moved_in = (video - video[:1]).abs().amax(dim=1) > 0  # (F, H, W)
    moved_out = (out - out[:1]).abs().amax(dim=1) > 1e-6
    assert moved_in[1:].any()
    assert torch.equal(moved_in, moved_out)


@pytest.mark.parametrize("name", PRESERVING)
def test_appearance_really_changes(registry, name):
    aug = make(registry, name)
    change = [(aug(random_clip(s), gen(s)) - random_clip(s)).abs().mean().item() for s in range(4)]
    assert sum(change) / len(change) > 0.05
    assert min(change) > 0.01


def test_blur_keeps_the_clip_mean_and_smooths(registry):
    video = random_clip()
    out = make(registry, "blur", min_sigma=1.5, max_sigma=1.5)(video, gen(0))
    roughness = lambda v: (v[..., 1:] - v[..., :-1]).abs().mean()  # noqa: E731
    assert roughness(out) < 0.6 * roughness(video)
    assert torch.allclose(out.mean(dim=(2, 3)), video.mean(dim=(2, 3)), atol=0.05)


def test_hflip_reverses_the_motion(registry):
    video = two_tone_clip()
    out = make(registry, "hflip")(video, gen(0))

    def square_x(v):  # x position of the bright square per frame
        bright = (v.mean(dim=1) > 0).float()  # (F, H, W)
        return (bright.sum(dim=1) * torch.arange(SIZE)).sum(dim=1) / bright.sum(dim=(1, 2))

    assert (square_x(video).diff() > 0).all()
    assert (square_x(out).diff() < 0).all()


def test_compose_applies_one_or_more(registry):
    from flashctl_augment.transforms import compose

    video = two_tone_clip()
    invert, gray = make(registry, "invert"), make(registry, "grayscale")
    assert torch.equal(compose([invert], video, gen(0)), invert(video, gen(0)))
    # invert and grayscale commute, so "both" is one candidate
    candidates = [invert(video, gen(0)), gray(video, gen(0)), gray(invert(video, gen(0)), gen(0))]

    def which(out: torch.Tensor) -> int:
        matches = [i for i, c in enumerate(candidates) if torch.allclose(out, c, atol=1e-6)]
        assert matches, "compose produced something other than a sequence of the given augmentations"
        return matches[0]

    assert {which(compose([invert, gray], video, gen(s))) for s in range(12)} == {0, 1, 2}
    assert {which(compose([invert, gray], video, gen(s), max_ops=1)) for s in range(12)} == {0, 1}
    assert torch.equal(compose([invert, gray], video, gen(5)), compose([invert, gray], video, gen(5)))


def test_bad_range_names_the_keys(registry):
    with pytest.raises(ConfigError, match="min_bits"):
        make(registry, "posterize", min_bits=4, max_bits=2)
    with pytest.raises(ConfigError, match="brightness"):
        make(registry, "color-jitter", brightness=2.0)
