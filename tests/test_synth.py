"""The synthetic human-action world: determinism, disjoint appearance pools, keypoints that follow
the motion, mp4/JSON/PNG output, and the `flashctl synth` command."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields

import numpy as np
import pytest
from PIL import Image

from flashctl.video import change_map, read_frames
from flashctl_synth.actions import ACTIONS
from flashctl_synth.errors import SynthSettingError, UnknownActionError
from flashctl_synth.render import motion_mask, render_clip, write_clips
from flashctl_synth.scenes import background
from flashctl_synth.world import POOLS, Pool, sample_appearance, sample_body

SEEDS = (0, 1, 2, 3)


def joints(meta: dict, name: str) -> np.ndarray:
    """(F, 2) pixel track of one joint."""
    return np.asarray(meta["keypoints"])[:, meta["joints"].index(name)]


def frame_at(meta: dict, phase: float) -> int:
    """The frame whose cycle phase is closest to ``phase``."""
    p = np.asarray(meta["phase"])
    return int(np.argmin(np.minimum(abs(p - phase), 1 - abs(p - phase))))


def test_same_seed_same_clip_other_seed_other_clip():
    frames_a, meta_a = render_clip("kick", frames=6, size=48, seed=7)
    frames_b, meta_b = render_clip("kick", frames=6, size=48, seed=7)
    frames_c, meta_c = render_clip("kick", frames=6, size=48, seed=8)
    assert frames_a.shape == (6, 48, 48, 3) and frames_a.dtype == np.uint8
    assert np.array_equal(frames_a, frames_b) and meta_a == meta_b
    assert not np.array_equal(frames_a, frames_c)
    assert meta_a["appearance"] != meta_c["appearance"] and meta_a["keypoints"] != meta_c["keypoints"]


def test_pools_share_no_palette_entry_or_style():
    train, heldout = POOLS["train"], POOLS["heldout"]
    for f in fields(Pool):
        if f.name == "inks":  # neither pool is outlined (tests/test_synth_drawn.py)
            continue
        a, b = set(getattr(train, f.name)), set(getattr(heldout, f.name))
        assert a and b and not a & b, f.name
    pooled = {"skin": "skin", "hair_color": "hair_colors", "hair_style": "hair_styles", "shirt": "cloth_colors",
              "shirt_accent": "cloth_colors", "pants": "cloth_colors", "pants_accent": "cloth_colors",
              "shoes": "shoe_colors", "shirt_pattern": "patterns", "pants_pattern": "patterns",
              "background": "backgrounds", "background_colors": "background_pairs"}
    seen = {split: {key: set() for key in pooled} for split in POOLS}
    for split, pool in POOLS.items():
        for seed in range(60):
            look = sample_appearance(np.random.default_rng(seed), split)
            for key, pool_field in pooled.items():
                value = getattr(look, key)
                assert value in getattr(pool, pool_field), (split, key, value)
                seen[split][key].add(value)
    for key in pooled:
        assert not seen["train"][key] & seen["heldout"][key], key
    # rendered clips carry the split's appearance in their metadata
    _, meta = render_clip("bow", frames=1, size=32, seed=3, split="heldout")
    assert tuple(meta["appearance"]["skin"]) in heldout.skin


@pytest.mark.parametrize("seed", SEEDS)
def test_jumping_jack_wrists_go_above_shoulders_and_back(seed):
    _, meta = render_clip("jumping_jack", frames=16, size=64, seed=seed)
    top, rest = frame_at(meta, 0.5), frame_at(meta, 0.0)
    for side in ("left", "right"):
        wrist, shoulder = joints(meta, f"{side}_wrist")[:, 1], joints(meta, f"{side}_shoulder")[:, 1]
        assert wrist[top] < shoulder[top] - 5           # y grows downwards: the hands are overhead
        assert wrist[rest] > shoulder[rest] + 5          # and back down by the hips
    spread = abs(joints(meta, "left_ankle")[:, 0] - joints(meta, "right_ankle")[:, 0])
    assert spread[top] > spread[rest] + 2                # the feet jump apart too


@pytest.mark.parametrize("seed", SEEDS)
def test_squat_drops_the_pelvis_with_feet_on_the_floor(seed):
    _, meta = render_clip("squat", frames=16, size=64, seed=seed)
    pelvis = joints(meta, "pelvis")[:, 1]
    standing_height = joints(meta, "left_ankle")[0, 1] - joints(meta, "head")[0, 1]
    assert pelvis[frame_at(meta, 0.5)] - pelvis[0] > 0.2 * standing_height
    ankles = np.stack([joints(meta, "left_ankle"), joints(meta, "right_ankle")])  # (2, F, 2)
    assert np.ptp(ankles[..., 1]) < 0.05 and np.ptp(ankles[..., 0]) < 0.05     # planted feet do not move


@pytest.mark.parametrize("seed", SEEDS)
def test_jump_leaves_the_ground_and_lands(seed):
    _, meta = render_clip("jump", frames=16, size=64, seed=seed)
    feet = np.maximum(joints(meta, "left_ankle")[:, 1], joints(meta, "right_ankle")[:, 1])  # (F,) lowest foot
    standing_height = feet[0] - joints(meta, "head")[0, 1]
    assert feet[0] - feet.min() > 0.1 * standing_height  # both feet well above the floor at the top
    assert feet[-1] == pytest.approx(feet[0], abs=0.05)  # and back on it


@pytest.mark.parametrize("action", ["squat", "arm_wave", "kick", "punch", "bow", "side_bend"])
def test_grounded_actions_keep_one_foot_on_the_floor(action):
    _, meta = render_clip(action, frames=16, size=64, seed=5)
    feet = np.maximum(joints(meta, "left_ankle")[:, 1], joints(meta, "right_ankle")[:, 1])
    assert np.ptp(feet) < 0.05
    assert 0 < meta["ground_y"] - feet[0] < 3  # the ankle sits just above the floor line


def test_kick_raises_one_foot_to_hip_height():
    _, meta = render_clip("kick", frames=16, size=64, seed=2)
    active = meta["motion"]["active"]
    kick, stance = joints(meta, f"{active}_ankle"), joints(meta, f"{'right' if active == 'left' else 'left'}_ankle")
    hip = joints(meta, "pelvis")[:, 1]
    assert (kick[:, 1] < hip + 3).any()                  # the kicking foot comes up near hip height
    assert np.ptp(stance[:, 1]) < 0.05                   # while the other foot stays put


def test_every_action_moves_and_no_two_move_alike():
    tracks = {}
    for action in ACTIONS:
        _, meta = render_clip(action, frames=16, size=64, seed=4)  # same seed: same person, same framing
        kp = np.asarray(meta["keypoints"])                          # (F, J, 2)
        tracks[action] = kp - kp[:1]                                # motion relative to the first frame
        assert np.abs(tracks[action]).max() > 5, action
    names = list(tracks)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(tracks[a] - tracks[b]).mean() > 0.5, (a, b)


def test_keypoints_land_on_the_drawn_person():
    for action, seed in [("jumping_jack", 1), ("bow", 2), ("punch", 6)]:
        frames, meta = render_clip(action, frames=8, size=64, seed=seed)
        look, body = sample_appearance(np.random.default_rng([seed, 0, 1]), "train"), \
            sample_body(np.random.default_rng([seed, 0, 2]))
        assert meta["appearance"] == look.to_dict()
        scene = np.asarray(background(look, body, 256, 256).resize((64, 64), Image.Resampling.LANCZOS), int)
        kp = np.floor(np.asarray(meta["keypoints"])).astype(int)          # (F, J, 2) pixel x, y
        covered = [np.abs(frames[f, y, x].astype(int) - scene[y, x]).sum() > 30
                   for f in range(len(frames)) for x, y in kp[f]]
        assert np.mean(covered) > 0.85, action


def test_write_clips_mp4_round_trip_and_json(tmp_path):
    paths = write_clips("arm_wave", 2, tmp_path / "clips", frames=12, size=48, fps=6, seed=10, split="heldout")
    assert [p.name for p in paths] == ["arm_wave_heldout_00010.mp4", "arm_wave_heldout_00011.mp4"]
    for i, path in enumerate(paths):
        decoded = read_frames(path)
        assert decoded.shape == (12, 48, 48, 3)
        rendered, meta = render_clip("arm_wave", frames=12, size=48, fps=6, seed=10 + i, split="heldout")
        assert np.abs(decoded.astype(float) - rendered).mean() < 6
        saved = json.loads(path.with_suffix(".json").read_text())
        assert saved == json.loads(json.dumps(meta))
        assert saved["seed"] == 10 + i and saved["fps"] == 6 and saved["size"] == 48
        assert np.asarray(saved["keypoints"]).shape == (12, len(saved["joints"]), 2)


def test_reference_only_writes_first_frames_as_png(tmp_path):
    paths = write_clips("squat", 2, tmp_path, size=40, seed=3, reference_only=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["squat_train_00003.png", "squat_train_00004.png"]
    for i, path in enumerate(paths):
        first, _ = render_clip("squat", frames=16, size=40, seed=3 + i)
        assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), first[0])


def test_bad_settings_fail_before_anything_is_written(tmp_path):
    keep = tmp_path / "squat_train_00000.mp4"
    keep.write_bytes(b"an earlier clip")
    for kwargs in ({"size": 8}, {"frames": 0}, {"fps": 0}, {"seed": -1}, {"split": "test"}):
        with pytest.raises(SynthSettingError) as info:
            write_clips("squat", 1, tmp_path, **kwargs)
        assert str(next(iter(kwargs.values()))) in info.value.message and info.value.hint
    with pytest.raises(UnknownActionError, match="available: jumping_jack, squat"):
        write_clips("squats", 1, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [keep.name] and keep.read_bytes() == b"an earlier clip"


def run_cli(argv: list[str]) -> int:
    from flashctl.cli import main

    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_cli_writes_clips_and_keypoints(tmp_path, capsys):
    out = tmp_path / "synth"
    rc = run_cli(["synth", "kick", "--clips", "3", "--out", str(out), "--seed", "4", "--frames", "8", "--size", "32"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    printed = captured.out.split()
    assert printed == [str(out / f"kick_train_{s:05d}.mp4") for s in (4, 5, 6)]
    for path in printed:
        assert read_frames(path).shape == (8, 32, 32, 3)
        assert json.loads(open(path[:-4] + ".json").read())["action"] == "kick"


def test_cli_reference_only_and_unknown_action(tmp_path, capsys):
    rc = run_cli(["synth", "bow", "--clips", "2", "--out", str(tmp_path / "refs"), "--reference-only",
                  "--appearance-split", "heldout", "--size", "32"])
    assert rc == 0
    assert [p.rsplit("/", 1)[1] for p in capsys.readouterr().out.split()] == \
        ["bow_heldout_00000.png", "bow_heldout_00001.png"]
    rc = run_cli(["synth", "moonwalk", "--out", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert rc == 2 and "moonwalk" in err and "side_bend" in err
    assert not (tmp_path / "none").exists()


def test_importing_the_plugin_loads_no_drawing_code():
    code = ("import sys, flashctl_synth; "
            "print(sorted(m for m in ('PIL', 'flashctl_synth.render', 'torch') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("action", ["jumping_jack", "kick"])
def test_motion_mask_holds_nearly_all_of_the_clips_change(action):
    clip, meta = render_clip(action, frames=8, size=64, seed=3)
    mask, change = motion_mask(meta), change_map(clip)
    assert 0.02 < mask.mean() < 0.6  # a box around the person, not the frame
    assert change[mask].sum() > 0.9 * change.sum()


def test_people_limits_the_appearances_not_the_motions(tmp_path):
    write_clips("bow", 4, tmp_path, frames=4, size=32, seed=10, people=2)
    metas = [json.loads((tmp_path / f"bow_train_{10 + i:05d}.json").read_text()) for i in range(4)]
    assert [m["seed"] for m in metas] == [10, 11, 10, 11]  # two people, taking turns
    assert metas[0]["appearance"] == metas[2]["appearance"] and metas[0]["appearance"] != metas[1]["appearance"]
    assert len({m["motion"]["amplitude"] for m in metas}) == 4  # every clip its own variation
    same_person, _ = render_clip("bow", frames=4, size=32, seed=10, motion_seed=10)
    assert np.array_equal(same_person, render_clip("bow", frames=4, size=32, seed=10)[0])  # default: motion = person
    with pytest.raises(SynthSettingError, match="people=0"):
        write_clips("bow", 2, tmp_path / "none", people=0)


def test_canonical_clips_face_right_and_lead_with_the_right_limbs(tmp_path):
    for action in ("bow", "side_bend"):
        metas = [render_clip(action, frames=2, size=32, seed=s, canonical=True)[1] for s in range(6)]
        assert {m["motion"]["active"] for m in metas} == {"right"} and all(m["canonical"] for m in metas)
        assert {m["motion"]["facing"] for m in metas} == ({1} if metas[0]["view"] == "side" else {0})
    free = [render_clip("bow", frames=2, size=32, seed=s)[1]["motion"]["facing"] for s in range(12)]
    assert set(free) == {-1, 1}  # without it both directions occur


@pytest.mark.parametrize("prior", ["wander_side", "wander_front"])
def test_wander_priors_move_differently_per_clip_and_are_not_actions(prior):
    """The pretraining motion priors: the same clip every render, another random motion per motion seed, a
    real movement away from standing; and never counted among the world's actions (metrics, recognition)."""
    from flashctl_synth.actions import PRIOR_MOTIONS, get_action

    assert prior in PRIOR_MOTIONS and prior not in ACTIONS and get_action(prior) is PRIOR_MOTIONS[prior]
    tracks = []
    for motion_seed in (0, 1, 2):
        video, meta = render_clip(prior, frames=16, size=64, seed=7, motion_seed=motion_seed)
        again, _ = render_clip(prior, frames=16, size=64, seed=7, motion_seed=motion_seed)
        assert np.array_equal(video, again)
        kp = np.asarray(meta["keypoints"])  # (F, J, 2)
        tracks.append(kp - kp[:1])
        assert np.abs(tracks[-1]).max() > 5, motion_seed
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(tracks[i] - tracks[j]).mean() > 0.5, (i, j)
    with pytest.raises(UnknownActionError, match="motion priors for pretraining: wander_side"):
        get_action("wander")
