"""The ``drawn`` appearance split (outlined flat cartoons on paper, a palette of its own), and that adding it
left the ``train``, ``heldout`` and ``pose`` renders pixel for pixel as they were."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from cli_kit import run
from flashctl_synth.actions import ACTIONS
from flashctl_synth.keypoint_data import render_frames
from flashctl_synth.keypoint_net import estimate, pck
from flashctl_synth.render import render_clip, write_clips
from flashctl_synth.world import POOLS, SPLITS, sample_appearance

COLOUR_FIELDS = ("skin", "hair_colors", "cloth_colors", "shoe_colors", "inks")

# sha256 of the renders below, computed with the code as it was before the drawn split existed (commit 102dea1),
# by running this very loop; it guards that outlines and the paper scene changed nothing in the other splits.
BEFORE_DRAWN = "bc091b6e2216b6f23b8614487ea9394b8519b11925a8d434f47d7d3abbbc7230"


def test_other_splits_render_exactly_as_before_the_drawn_split():
    digest = hashlib.sha256()
    for split in ("train", "heldout", "pose"):
        for seed in range(8):
            for action in ("bow", "jumping_jack"):
                video, _ = render_clip(action, frames=2, size=32, seed=seed, split=split)  # (2, 32, 32, 3)
                digest.update(video.tobytes())
    assert digest.hexdigest() == BEFORE_DRAWN
    assert SPLITS[:3] == ("train", "heldout", "pose") and SPLITS[3] == "drawn"  # append-only: seeds stay put


def colours(pool) -> set:
    return {c for name in COLOUR_FIELDS for c in getattr(pool, name)} | {c for p in pool.background_pairs for c in p}


def test_drawn_palette_shares_no_colour_with_either_pool():
    drawn = POOLS["drawn"]
    assert len(colours(drawn)) > 20 and not colours(drawn) & (colours(POOLS["train"]) | colours(POOLS["heldout"]))
    looks = [sample_appearance(np.random.default_rng(seed), "drawn") for seed in range(40)]
    for look in looks:
        assert look.ink in drawn.inks and look.background == "paper" and look.background_colors in drawn.background_pairs
        assert look.shirt_pattern == look.pants_pattern == "plain"
        assert {look.skin, look.hair_color, look.shirt, look.pants, look.shoes} <= colours(drawn)
    assert len({look.ink for look in looks}) > 1 and len({look.background_colors for look in looks}) > 1
    assert {sample_appearance(np.random.default_rng(s), split).ink for s in range(20) for split in SPLITS[:3]} == {None}


def test_drawn_people_are_outlined_in_ink_on_paper_with_keypoints(tmp_path):
    video, meta = render_clip("bow", frames=4, size=64, seed=3, split="drawn", canonical=True)  # (4, 64, 64, 3)
    look = meta["appearance"]
    paper, floor = (np.asarray(c) for c in look["background_colors"])
    assert np.array_equal(video[0, 0, 0], paper) and np.array_equal(video[0, -1, 0], floor)
    inked = np.abs(video.astype(int) - np.asarray(look["ink"])).sum(-1) < 40  # (4, 64, 64) near-ink pixels
    box = np.zeros(video.shape[1:3], bool)
    (x0, y0), (x1, y1) = np.floor(np.min(meta["keypoints"], axis=(0, 1))).astype(int), \
        np.ceil(np.max(meta["keypoints"], axis=(0, 1))).astype(int)
    box[y0 - 4:y1 + 4, x0 - 4:x1 + 4] = True
    assert inked[:, box].mean() > 0.05 and not inked[:, ~box].any()  # the outlines, only around the person
    assert meta["split"] == "drawn" and np.asarray(meta["keypoints"]).shape == (4, len(meta["joints"]), 2)
    (path,) = write_clips("jump", 1, tmp_path, frames=2, size=32, seed=5, split="drawn")
    assert path.name == "jump_drawn_00005.mp4" and path.with_suffix(".json").is_file()


def test_cli_writes_drawn_clips_and_a_bad_split_names_every_split(tmp_path, capsys):
    done = run(capsys, "synth", "bow", "--clips", "1", "--out", tmp_path, "--appearance-split", "drawn",
               "--frames", "2", "--size", "32", "--canonical")
    assert done.code == 0 and done.out.split() == [str(tmp_path / "bow_drawn_00000.mp4")]
    bad = run(capsys, "synth", "bow", "--out", tmp_path / "none", "--appearance-split", "sketch")
    assert bad.code == 2 and "sketch" in bad.err and "train, heldout, pose, drawn" in bad.err


def test_keypoint_estimator_finds_drawn_people_as_well_as_held_out_ones():
    """The estimator never trained on drawn people (it trains on ``pose``); the same floor as held-out frames."""
    torch.set_num_threads(1)
    frames, points, heights = render_frames("drawn", clips=len(ACTIONS), seed=50_000, per_clip=1)  # (A, 3, 64, 64)
    assert pck(estimate(frames), points, heights) >= 0.8
