"""The embedded default: the shipped tiny base, the demo motion library in motions/, the example images."""

import json
from pathlib import Path

import numpy as np
import pytest
from flashctl_animatediff.components import BASE_RECORD, SHIPPED_TINY_BASE
from flashctl_synth.render import motion_mask, render_clip

from flashctl.config import load_config
from flashctl.library import MotionLibrary
from flashctl.pipeline.animate import load_animator
from flashctl.pipeline.pretrain import MAX_BYTES
from flashctl.video import change_map, fit_square, read_image

REPO = Path(__file__).resolve().parents[1]
DEMO_ACTIONS = ("jumping_jack", "squat", "arm_wave", "kick")


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


def test_demo_library_holds_four_verified_full_flash_motions(project):
    config, library = project
    assert set(DEMO_ACTIONS) <= set(library.names())
    for action in DEMO_ACTIONS:
        assert library.verify(action) == [], action  # every clip and weight file matches its hash
        folder = library.root / action
        assert len(list((folder / "clips").glob("*.mp4"))) <= 16
        provenance = json.loads((folder / "provenance.json").read_text())
        assert provenance["mam"]["ablation"] == "#6", action  # full FLASH: MAM + DED
        assert (folder / "weights" / "decoder.safetensors").is_file() and (folder / "preview.gif").is_file()
        metrics = json.loads((folder / "eval" / "metrics.json").read_text())
        assert len(metrics["samples"]) == 4 and "motion-fidelity/map_similarity" in metrics["summary"], action


def test_jumping_jack_on_the_example_actor_starts_at_the_image_and_moves_where_the_person_is(project, host):
    config, library = project
    animator = load_animator(config, library, "jumping_jack", host)
    image = fit_square(read_image(REPO / "examples" / "actor.png"), 64)  # actor.png: held-out person, seed 7
    video = animator.render(image, seed=0)  # (16, 64, 64, 3) uint8
    assert video.shape == (16, 64, 64, 3)
    assert np.abs(video[0].astype(int) - image.astype(int)).max() <= 1  # anchored: frame 0 is the image
    real, meta = render_clip("jumping_jack", frames=16, size=64, seed=7, split="heldout")  # same person, real motion
    person = motion_mask(meta)  # where a real jumping jack of this person moves
    made, truth = change_map(video), change_map(real)
    assert made[person].mean() > 2 * made[~person].mean()  # the change is on the person, not background flicker
    assert made[person].mean() > 0.5 * truth[person].mean()  # and it is not a still picture (measured: 1.0x)
