"""The embedded default: the shipped tiny base, the demo motion library in motions/, the example images."""

import json
from pathlib import Path

import numpy as np
import pytest
from flashctl_animatediff.components import BASE_RECORD, SHIPPED_TINY_BASE
from flashctl_synth.actions import ACTIONS
from flashctl_synth.render import motion_mask, render_clip

from flashctl.config import load_config
from flashctl.library import MotionLibrary
from flashctl.pipeline.animate import load_animator
from flashctl_animatediff.pretrain import MAX_BYTES
from flashctl.video import change_map, fit_square, read_image

REPO = Path(__file__).resolve().parents[1]
DEMO_ACTIONS = ("bow", "jump", "side_bend", "soccer_shot")


@pytest.fixture(scope="module")
def project():
    config = load_config(REPO / "flashctl.toml")
    return config, MotionLibrary(config.library_path())


def test_shipped_base_fits_the_package_budget_and_records_how_it_was_trained():
    files = [f for f in SHIPPED_TINY_BASE.rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) <= MAX_BYTES
    assert not any(f.suffix in (".bin", ".pt", ".pth", ".ckpt") for f in files)  # safetensors only
    record = json.loads((SHIPPED_TINY_BASE / BASE_RECORD).read_text())
    assert record == {"target": "residual", "prediction_type": "v_prediction"}
    provenance = json.loads((SHIPPED_TINY_BASE / "provenance.json").read_text())
    assert provenance["unet"]["steps"] >= 10000 and provenance["decoder"]["steps"] > 0 and provenance["settings"]["frames"] == 16
    assert provenance["settings"]["size"] >= 64


def test_demo_motions_are_actions_the_base_never_saw(project):
    config, library = project
    pretrained_on = set(json.loads((SHIPPED_TINY_BASE / "provenance.json").read_text())["settings"]["actions"])
    assert pretrained_on and set(ACTIONS) > pretrained_on  # the base knows some of the world's actions, not all
    assert set(library.names()) == set(DEMO_ACTIONS) and not pretrained_on & set(DEMO_ACTIONS)


def test_demo_library_holds_verified_motions_trained_with_the_project_recipe(project):
    config, library = project
    for action in DEMO_ACTIONS:
        assert library.verify(action) == [], action  # every clip and weight file matches its hash
        folder = library.root / action
        assert len(list((folder / "clips").glob("*.mp4"))) <= 16
        provenance = json.loads((folder / "provenance.json").read_text())
        assert provenance["mam"]["ablation"] == config.train.ablation_row, action  # what flashctl.toml trains
        assert (folder / "preview.gif").is_file()
        metrics = json.loads((folder / "eval" / "metrics.json").read_text())
        assert len(metrics["samples"]) == 8 and "motion-track/correlation" in metrics["summary"], action
        assert "keypoints/error" in metrics["summary"], action


def test_bow_on_the_example_actor_starts_at_the_image_and_moves_where_the_person_is(project, host):
    config, library = project
    animator = load_animator(config, library, "bow", host)
    image = fit_square(read_image(REPO / "examples" / "actor_side.png"), 64)  # held-out person 7, side view
    video = animator.render(image, seed=0)  # (16, 64, 64, 3) uint8
    assert video.shape == (16, 64, 64, 3)
    assert np.abs(video[0].astype(int) - image.astype(int)).max() <= 1  # anchored: frame 0 is the image
    real, meta = render_clip("bow", frames=16, size=64, seed=7, split="heldout", canonical=True)  # the real bow
    person = motion_mask(meta)  # where a real bow of this person moves
    made = change_map(video)
    assert made[person].mean() > 2 * made[~person].mean()  # the change is on the person, not background flicker
