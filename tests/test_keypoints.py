"""The synthetic world's keypoint estimator and the ``keypoints`` metric: shipped weights, accuracy on
held-out appearances, a frozen first frame scoring worse than the real continuation, action recognition."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors import safe_open

from flashctl.plugins import build_host
from flashctl_synth.actions import ACTIONS
from flashctl_synth.keypoint_data import gaussian_blur, render_frames
from flashctl_synth.keypoint_metric import SWAP, compare_moves, keypoint_error, recognise
from flashctl_synth.keypoint_net import WEIGHTS, estimate, load_keypoint_net, pck, to_tensor
from flashctl_synth.render import render_clip
from flashctl_synth.skeleton import JOINTS
from flashctl_synth.world import POOLS, sample_appearance

torch.set_num_threads(1)


def clip(action: str, seed: int, frames: int = 8) -> tuple[torch.Tensor, dict]:
    video, meta = render_clip(action, frames=frames, size=64, seed=seed, split="heldout")
    return to_tensor(video), meta  # (F, 3, 64, 64)


def test_shipped_weights_are_small_safetensors_with_one_heatmap_per_joint():
    assert WEIGHTS.is_file() and WEIGHTS.stat().st_size < 4 * 2**20
    with safe_open(str(WEIGHTS), "pt") as f:
        assert f.get_slice("head.weight").get_shape()[:2] == [len(JOINTS), 64]
        assert f.get_slice("body.0.0.weight").get_shape() == [32, 3, 3, 3]
    net = load_keypoint_net()
    assert net(torch.zeros(2, 3, 64, 64)).shape == (2, len(JOINTS), 2)


def test_pck_on_held_out_appearances_clean_and_blurred():
    frames, points, heights = render_frames("heldout", clips=len(ACTIONS), seed=50_000, per_clip=1)  # (A, 3, 64, 64)
    assert pck(estimate(frames), points, heights) >= 0.8
    blurred = gaussian_blur(frames, torch.full((len(frames),), 1.0))
    assert pck(estimate(blurred), points, heights) >= 0.75


def test_estimates_follow_the_frame_size():
    frames, points, _ = render_frames("heldout", clips=1, seed=50_100, per_clip=1)
    big = torch.nn.functional.interpolate(frames, scale_factor=2, mode="bilinear")  # (1, 3, 128, 128)
    assert torch.allclose(estimate(big), 2 * estimate(frames), atol=2.0)


@pytest.mark.parametrize("action, seed", [("jumping_jack", 3), ("squat", 4)])
def test_real_continuation_beats_a_frozen_first_frame(action, seed):
    real, _ = clip(action, seed)
    frozen = real[:1].expand_as(real)
    assert keypoint_error(real, reference=real[0], target=real)["error"] < 0.05
    blurred = gaussian_blur(real, torch.full((len(real),), 1.0))
    assert keypoint_error(frozen, reference=real[0], target=real)["error"] > \
        2 * keypoint_error(blurred, reference=real[0], target=real)["error"]
    still = keypoint_error(frozen, reference=real[0], target=real)
    assert still["correlation"] == 0.0 and still["gain"] == 0.0
    moving = keypoint_error(blurred, reference=real[0], target=real)
    assert moving["correlation"] > 0.8 and 0.6 < moving["gain"] < 1.4


def test_joint_moves_are_compared_mirror_aware():
    real, _ = clip("kick", 7)
    points = estimate(real)  # (F, J, 2)
    mirrored = points[:, SWAP] * torch.tensor([-1.0, 1.0])
    assert compare_moves(mirrored, points)["correlation"] > 0.99
    backwards = points.flip(0)
    assert compare_moves(backwards, points)["correlation"] < compare_moves(points, points)["correlation"] - 0.3


def test_no_target_no_score_and_the_plugin_registers_the_metric():
    real, _ = clip("kick", 5, frames=4)
    assert keypoint_error(real, reference=real[0]) == {}
    spec = build_host().registry.get("metric", "keypoints")
    assert spec.traits.requires_target and spec.traits.higher_is_better == {"correlation": True, "gain": "near 1", "error": False}


def test_recognise_names_the_action_the_person_really_does():
    video, meta = clip("jumping_jack", 6)
    best, scores = recognise(video, meta)
    assert best == "jumping_jack" and set(scores) == set(ACTIONS)
    assert recognise(video[:1].expand_as(video), meta)[0] == "none"


def test_pose_split_draws_colours_outside_both_pools():
    looks = [sample_appearance(np.random.default_rng(s), "pose") for s in range(20)]
    pooled = {c for pool in POOLS.values() for c in pool.cloth_colors}
    assert sum(look.shirt not in pooled for look in looks) >= 18
    assert {look.background for look in looks} > set(POOLS["train"].backgrounds)  # styles of both pools
