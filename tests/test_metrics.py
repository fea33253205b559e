"""Metrics: each one moves in its declared direction on synthetic videos."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from flashctl.errors import ConfigError
from flashctl.plugins import build_host

FRAMES, SIZE = 8, 32
NAMES = ["first-frame", "smoothness", "temporal-consistency", "motion-fidelity", "appearance", "transition",
         "motion-track"]


@pytest.fixture(scope="module")
def registry():
    return build_host().registry


def metric(registry, name, **options):
    return registry.create("metric", name, options)


def background(other: bool = False) -> torch.Tensor:
    """A diagonal two-colour gradient (``other``: mirrored, other colours): (3, H, W)."""
    ramp = torch.linspace(0, 1, SIZE)
    t = (ramp.view(-1, 1) + ramp.view(1, -1)) / 2  # (H, W)
    a, b = torch.tensor([-0.7, -0.2, 0.3]), torch.tensor([0.2, -0.6, -0.5])
    if other:
        t, a, b = t.flip(-1), torch.tensor([0.5, 0.4, -0.8]), torch.tensor([-0.3, 0.6, 0.1])
    return a.view(3, 1, 1) * (1 - t) + b.view(3, 1, 1) * t


def figure(bg: torch.Tensor, path, colour=(0.9, 0.8, -0.9)) -> torch.Tensor:
    """A 6x6 square at (row, col) = path(t) over a static background: (F, 3, H, W)."""
    video = bg.expand(FRAMES, 3, SIZE, SIZE).clone()
    for t in range(FRAMES):
        r, c = path(t)
        video[t, :, r:r + 6, c:c + 6] = torch.tensor(colour).view(3, 1, 1)
    return video


def rightward(t):
    return 4, 2 + 3 * t


def downward(t):
    return 4 + 3 * t, 2


@pytest.fixture(scope="module")
def target():
    return figure(background(), rightward)


def noisy(video: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (video + std * torch.randn(video.shape, generator=g)).clamp(-1, 1)


def test_directions_cover_every_key(registry, target):
    for name in NAMES:
        spec = registry.get("metric", name)
        score = spec.factory(spec.validate_options({}, name), None)
        with_target, without = score(target, reference=target[0], target=target), score(target, reference=target[0])
        assert with_target and set(with_target) | set(without) == set(spec.traits.higher_is_better), name
        assert all(isinstance(v, float) and math.isfinite(v) for v in with_target.values()), name


def flickering(video: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Every frame after the first with a random gain and offset per colour channel: (F, 3, H, W)."""
    g = torch.Generator().manual_seed(seed)
    gain = 0.6 + 0.8 * torch.rand(len(video), 3, 1, 1, generator=g)  # (F, 3, 1, 1)
    offset = 0.4 * torch.rand(len(video), 3, 1, 1, generator=g) - 0.2
    gain[0], offset[0] = 1, 0
    return (video * 0.6) * gain + offset  # shrunk first, so nothing clips


def test_flow_follows_a_shift_and_ignores_whole_frame_flicker():
    from flashctl_metrics.flow import video_flow

    g = torch.Generator().manual_seed(0)
    texture = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 48, 48, generator=g) * 2 - 1, 5, 1, 2)[0]
    moving = torch.stack([texture[:, 8:40, 8 + 2 * t:40 + 2 * t] for t in range(4)])  # content 2 px left per frame
    still = texture[:, 8:40, 8:40].expand(4, -1, -1, -1)  # (4, 3, 32, 32)
    for video in (moving, flickering(moving)):
        flow = video_flow(video)[..., 8:24, 8:24]  # (3, 2, 16, 16) away from the borders
        assert flow[:, 0].mean() == pytest.approx(-2.0, abs=0.1) and flow[:, 1].abs().mean() < 0.1
    assert float(video_flow(flickering(still)).abs().max()) < 0.05
    from flashctl_metrics.temporal import frame_changes

    assert float(frame_changes(flickering(still)).mean()) > float(frame_changes(moving).mean())  # more pixel change


def test_motion_track_ranks_the_real_motion_first(registry):
    score = metric(registry, "motion-track")
    target = figure(background(), lambda t: (2 + 2 * t, 2 + 3 * t))  # down and right: backwards is no mirror image
    frozen = target[:1].expand(FRAMES, -1, -1, -1)
    videos = {"self": target, "mirrored": target.flip(-1), "other": figure(background(), downward),
              "frozen": frozen, "noise": noisy(frozen, 0.1), "flicker": flickering(frozen),
              "backwards": target.flip(0)}
    results = {name: score(video, reference=target[0], target=target) for name, video in videos.items()}
    assert results["self"]["correlation"] == pytest.approx(1.0, abs=1e-5)
    assert results["self"]["gain"] == pytest.approx(1.0, abs=1e-3)
    assert results["mirrored"]["correlation"] > 0.9  # the same motion, the other way round
    for name in ("other", "frozen", "noise", "flicker", "backwards"):
        assert results[name]["correlation"] < 0.3, name
        assert abs(math.log(max(results[name]["gain"], 1e-9))) > 1.0, name  # gain far from 1 (or not positive)
    assert score(target, reference=target[0]) == {}


def test_relative_temporal_metrics_are_one_for_the_real_clip_and_not_for_a_frozen_one(registry, target):
    frozen = target[:1].expand(FRAMES, -1, -1, -1)
    keys = {"smoothness": ["jump_ratio"], "temporal-consistency": ["change_ratio", "flicker_ratio"],
            "transition": ["first_step", "drift"]}
    for name, names in keys.items():
        score = metric(registry, name)
        real, still = score(target, reference=target[0], target=target), score(frozen, reference=target[0], target=target)
        assert set(real) == set(names) == set(still), name
        for key in names:
            assert real[key] == pytest.approx(1.0, abs=1e-6), (name, key)
    for key in ("change_ratio", "flicker_ratio"):  # stillness no longer wins
        assert metric(registry, "temporal-consistency")(frozen, reference=target[0], target=target)[key] < 0.1
    assert metric(registry, "transition")(target, reference=target[0]) == {}


def test_anchored_transition_tells_starts_apart(registry, target):
    """Every video starts exactly at the reference (as under animate.anchor), so first-frame PSNR is 100
    for all of them; the transition still ranks a real start above a frozen or a jumping one."""
    score = metric(registry, "transition")
    slow = figure(background(), lambda t: rightward(max(t - 1, 0)))  # holds frame 0 once, then the real motion
    jumping = target.clone()
    jumping[1:] = figure(background(), lambda t: rightward(t + 4))[1:]  # leaps four steps into the motion
    boiling = torch.cat([target[:1], noisy(target[1:], 0.2)])
    starts = {"real": target, "slow": slow, "jump": jumping, "frozen": target[:1].expand(FRAMES, -1, -1, -1),
              "boiling": boiling}
    scores = {name: score(video, reference=target[0], target=target) for name, video in starts.items()}
    first_frame = metric(registry, "first-frame")
    assert all(first_frame(video, reference=target[0])["psnr"] == 100.0 for video in starts.values())
    steps = {name: s["first_step"] for name, s in scores.items()}
    assert steps["real"] == pytest.approx(1.0) and steps["frozen"] < 0.1 and steps["slow"] < 0.1
    assert steps["jump"] > 1.5 and steps["boiling"] > 3
    assert scores["boiling"]["drift"] > 3 * scores["real"]["drift"] and scores["frozen"]["drift"] < 0.1


def test_importing_the_plugin_does_not_import_torch():
    code = "import sys, flashctl_metrics; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_first_frame_identical_then_worse_with_noise(registry, target):
    score = metric(registry, "first-frame", max_psnr=99.0)
    same = score(target, reference=target[0])
    assert same["psnr"] == 99.0 and same["ssim"] == pytest.approx(1.0, abs=1e-5)
    light, heavy = (score(noisy(target, s), reference=target[0]) for s in (0.05, 0.3))
    assert same["psnr"] > light["psnr"] > heavy["psnr"]
    assert same["ssim"] > light["ssim"] > heavy["ssim"]


def test_psnr_matches_its_definition_and_ssim_prefers_a_shift_to_noise(registry, target):
    score = metric(registry, "first-frame")
    shift = 0.2  # on the [-1, 1] scale: 0.1 on [0, 1]
    reference = target[0].clamp(-0.7, 0.7)
    shifted = score((reference + shift)[None], reference=reference)
    assert shifted["psnr"] == pytest.approx(-20 * math.log10(shift / 2), abs=1e-3)
    # noise with the same MSE as the shift destroys structure; SSIM must notice, PSNR must not
    g = torch.Generator().manual_seed(0)
    sign = torch.randint(0, 2, reference.shape, generator=g) * 2 - 1
    speckled = score((reference + shift * sign)[None], reference=reference)
    assert speckled["psnr"] == pytest.approx(shifted["psnr"], abs=1e-3)
    assert speckled["ssim"] < shifted["ssim"] - 0.2


def test_ssim_is_symmetric_and_fits_tiny_images(registry):
    from flashctl_metrics.reference import ssim

    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(3, 5, 6, generator=g), torch.rand(3, 5, 6, generator=g)
    assert ssim(a, b, 11, 1.5) == pytest.approx(ssim(b, a, 11, 1.5), abs=1e-6)
    assert ssim(a, a, 11, 1.5) == pytest.approx(1.0, abs=1e-5) and ssim(a, b, 11, 1.5) < 0.5


def test_smoothness_flags_a_jump_out_of_the_reference(registry, target):
    score = metric(registry, "smoothness")
    smooth = score(target, reference=target[0])
    jumped = target.clone()
    jumped[1:] = figure(background(other=True), rightward)[1:]  # frame 0 is the reference, then another look
    jumpy = score(jumped, reference=target[0])
    frozen = score(target[:1].expand(FRAMES, -1, -1, -1), reference=target[0])
    assert smooth["jump"] == pytest.approx(1.0, abs=0.15)
    assert jumpy["jump"] > 5 * smooth["jump"] and jumpy["first_change"] > smooth["first_change"]
    assert frozen["jump"] == 1.0 and frozen["first_change"] == 0.0


def test_temporal_consistency_sees_flicker(registry, target):
    score = metric(registry, "temporal-consistency")
    still = score(target[:1].expand(FRAMES, -1, -1, -1), reference=target[0])
    smooth = score(target, reference=target[0])
    boiling = score(torch.stack([noisy(f, 0.1, seed=i) for i, f in enumerate(target)]), reference=target[0])
    pumping = target * torch.tensor([1.0, 0.6] * (FRAMES // 2)).view(-1, 1, 1, 1)  # brightness flicker
    pumped = score(pumping, reference=target[0])
    assert still == {"similarity": 1.0, "flicker": 0.0}
    assert still["similarity"] > smooth["similarity"] > boiling["similarity"]
    assert smooth["flicker"] < boiling["flicker"] and smooth["flicker"] < pumped["flicker"]


def test_motion_fidelity_ranks_motions(registry, target):
    score = metric(registry, "motion-fidelity")
    recoloured = figure(background(other=True), rightward, colour=(-0.9, 0.9, 0.8))[:, [2, 0, 1]]
    other_motion = figure(background(), downward)
    frozen = target[:1].expand(FRAMES, -1, -1, -1)
    results = {name: score(video, reference=target[0], target=target) for name, video in
               [("self", target), ("recoloured", recoloured), ("other", other_motion), ("frozen", frozen)]}
    sim = {k: v["map_similarity"] for k, v in results.items()}
    assert sim["self"] == pytest.approx(1.0, abs=1e-6)
    assert sim["self"] >= sim["recoloured"] > sim["other"] + 0.3 > sim["frozen"] + 0.3
    assert sim["frozen"] == 0.0 and results["frozen"]["energy_ratio"] == 0.0
    assert results["self"]["energy_ratio"] == 1.0


def test_motion_fidelity_needs_a_target_and_tolerates_other_sizes(registry, target):
    assert registry.get("metric", "motion-fidelity").traits.requires_target is True
    score = metric(registry, "motion-fidelity")
    assert score(target, reference=target[0]) == {}
    upscaled = torch.nn.functional.interpolate(target, scale_factor=2, mode="nearest")  # (F, 3, 2H, 2W)
    assert score(upscaled[:5], reference=target[0], target=target)["map_similarity"] == pytest.approx(1.0, abs=1e-5)


def test_appearance_keeps_colours_not_positions(registry, target):
    score = metric(registry, "appearance")
    moved = score(target, reference=target[0])
    grainy = score(noisy(target, 0.1), reference=target[0])
    recoloured = score(-target, reference=target[0])
    assert moved["histogram_min"] > 0.95
    assert moved["histogram_mean"] > grainy["histogram_mean"] > recoloured["histogram_mean"]
    assert recoloured["histogram_mean"] < 0.3


def test_bad_options_are_config_errors(registry):
    with pytest.raises(ConfigError, match="ssim_window"):
        metric(registry, "first-frame", ssim_window=8)
    with pytest.raises(ConfigError, match="grid"):
        metric(registry, "motion-fidelity", grid=0)
