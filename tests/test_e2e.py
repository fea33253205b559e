"""The whole pipeline through the CLI on the tiny random-weight backbone: prepare -> train -> animate -> eval."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cli_kit import run
from media import make_clip
from plugin_kit import plugin_source

FRAMES = 8
CONFIG = f"""
[prepare]
frames = {FRAMES}
size = 32
fps = 8.0

[model]
decoder = "detail-enhance"

[train]
steps = 2
augmentations = ["tint"]
strong_augment = true
detail_decoder = true

[train.mam]                # full FLASH (ablation #6)
motion_align = true
correspondence_align = true

[animate]
steps = 2
formats = ["mp4", "gif"]

[plugins]
paths = ["local_plugins"]

[options.decoder.detail-enhance]
train_steps = 2
"""


@pytest.fixture
def project(tmp_path):
    (tmp_path / "local_plugins").mkdir()
    (tmp_path / "local_plugins" / "tint.py").write_text(plugin_source("tint"))
    (tmp_path / "flashctl.toml").write_text(CONFIG)
    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(3):
        make_clip(clips / f"c{i}.mp4", frames=12, size=(48, 36), fps=10)
    Image.fromarray(np.full((40, 40, 3), 120, np.uint8)).save(tmp_path / "actor.png")
    return tmp_path


def test_prepare_train_animate_eval(project, capsys):
    from flashctl.video import probe

    r = run(capsys, "prepare", "wave", "--clips", project / "clips", "--prompt", "a person waving")
    assert r.code == 0, r.err
    assert (project / "motions" / "wave" / "motion.toml").exists()

    r = run(capsys, "train", "wave", "--json")
    assert r.code == 0, r.err
    result = json.loads(r.out)
    assert result["steps"] == 2 and np.isfinite(result["final_loss"])
    # the throwaway plugin's augmentation really fed training
    from flashctl.cli.state import state

    tint = state._host.pm.get_plugin("local:tint")
    assert tint.CALLS and tint.CALLS[0][0] == FRAMES

    r = run(capsys, "motions", "list", "--json")
    (info,) = json.loads(r.out)
    assert info["name"] == "wave" and info["trained"] and info["backbone"] == "animatediff"

    r = run(capsys, "animate", "--action", "wave", "--image", project / "actor.png", "--out", project / "out")
    assert r.code == 0, r.err
    outputs = r.out.split()
    mp4 = next(p for p in outputs if p.endswith(".mp4"))
    info = probe(mp4)
    assert info.frames == FRAMES and (info.width, info.height) == (32, 32)
    # stdout carries the videos only (one per line, for `| xargs ffprobe`); the contact sheet is in --json
    assert sorted(p.rsplit(".", 1)[1] for p in outputs) == ["gif", "mp4"] and (project / "out" / "actor_sheet.png").is_file()

    r = run(capsys, "animate", "-a", "wave", "-i", project / "actor.png", "-o", project / "clip.mp4", "--json")
    assert r.code == 0, r.err
    (entry,) = json.loads(r.out)
    assert entry["videos"] == [str(project / "clip.mp4")] and entry["extras"] == []
    assert probe(project / "clip.mp4").frames == FRAMES and (project / "clip.mp4").is_file()
    r = run(capsys, "animate", "-a", "wave", "-i", project / "actor.png", "-o", project / "clip.mp4")
    assert r.code == 0 and r.out.splitlines() == [str(project / "clip-1.mp4")]  # never a silent overwrite
    assert "clip.mp4 exists" in r.err and "--overwrite" in r.err
    r = run(capsys, "animate", "-a", "wave", "-i", project / "actor.png", "-i", project / "actor.png",
            "-o", project / "two.mp4")
    assert r.code == 2 and len(r.err.strip().splitlines()) == 2 and "2 images" in r.err  # error + hint lines

    r = run(capsys, "eval", "wave", "--json")
    assert r.code == 0, r.err
    metrics = json.loads((project / "motions" / "wave" / "eval" / "metrics.json").read_text())
    assert "motion-track/correlation" in metrics["summary"]  # a default metric, scored against the clips

    r = run(capsys, "motions", "verify", "--json")
    assert r.code == 0 and json.loads(r.out) == {"wave": []}


def test_guidance_option_changes_the_video_and_1_is_off(project, capsys):
    from PIL import Image

    assert run(capsys, "prepare", "wave", "--clips", project / "clips", "--prompt", "x").code == 0
    assert run(capsys, "train", "wave").code == 0
    sheets = {}
    for name, extra in (("default", []), ("four", ["--guidance", "4"]), ("off", ["-g", "1"])):
        r = run(capsys, "animate", "--action", "wave", "--image", project / "actor.png", "--out", project / name,
                "--format", "gif", *extra)
        assert r.code == 0, r.err
        sheets[name] = np.asarray(Image.open(project / name / "actor_sheet.png"))
    assert np.array_equal(sheets["default"], sheets["four"])  # the built-in animate.guidance_scale is 4
    assert not np.array_equal(sheets["off"], sheets["four"])


def test_bad_inputs_through_the_cli(project, capsys):
    r = run(capsys, "prepare", "../escape", "--clips", project / "clips", "--prompt", "x")
    assert r.code == 2 and "../escape" in r.err and "Traceback" not in r.err
    (project / "clips" / "c1.mp4").write_bytes(b"")
    r = run(capsys, "prepare", "wave", "--clips", project / "clips", "--prompt", "x")
    assert r.code == 1 and "c1.mp4" in r.err and not (project / "motions" / "wave").exists()
    r = run(capsys, "animate", "--action", "nope", "--image", project / "actor.png")
    assert r.code == 1 and "nope" in r.err and "flashctl prepare" in r.err
    (project / "fake.png").write_text("not an image")
    (project / "clips" / "c1.mp4").unlink()
    assert run(capsys, "prepare", "wave", "--clips", project / "clips", "--prompt", "x").code == 0
    assert run(capsys, "train", "wave").code == 0
    r = run(capsys, "animate", "--action", "wave", "--image", project / "fake.png")
    assert r.code == 1 and "fake.png" in r.err and "Traceback" not in r.err
    r = run(capsys, "animate", "--action", "wave", "--image", project / "actor.png",
            "--set", "options.backbone.animatediff.preset=sd15")
    assert r.code in (1, 2) and "Traceback" not in r.err


def test_motions_rm_asks_first(project, capsys, monkeypatch):
    import io

    assert run(capsys, "prepare", "wave", "--clips", project / "clips", "--prompt", "x").code == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    r = run(capsys, "motions", "rm", "wave")
    assert r.code == 1 and (project / "motions" / "wave" / "motion.toml").exists()
    r = run(capsys, "motions", "rm", "wave", "--yes")
    assert r.code == 0 and not (project / "motions" / "wave").exists()
    r = run(capsys, "motions", "show", "wave")
    assert r.code == 1 and "not found" in r.err


def test_detail_decoder_is_fitted_saved_and_loaded(project, capsys):
    """train.detail_decoder fits DED layers into weights/decoder.safetensors; animate loads them."""
    from flashctl.cli.state import state

    assert run(capsys, "prepare", "wave", "--clips", project / "clips", "--prompt", "x").code == 0
    assert run(capsys, "train", "wave").code == 0
    weights = json.loads((project / "motions" / "wave" / "weights" / "config.json").read_text())
    assert weights["decoder"] == {**weights["decoder"], "name": "detail-enhance", "file": "decoder.safetensors"}
    provenance = json.loads((project / "motions" / "wave" / "provenance.json").read_text())
    assert len(provenance["decoder_losses"]) == 2 and "weights/decoder.safetensors" in provenance["files"]

    r = run(capsys, "animate", "--action", "wave", "--image", project / "actor.png", "--out", project / "out")
    assert r.code == 0, r.err
    from flashctl.pipeline.animate import load_animator

    import torch
    from safetensors.torch import load_file

    config = state.config()
    model = load_animator(config, state.library(config), "wave", state.host(config)).model
    saved = load_file(project / "motions" / "wave" / "weights" / "decoder.safetensors")
    fresh = state.host(config).registry.create("decoder", "detail-enhance", {"train_steps": 2})
    fresh.attach(model.backbone)
    loaded, untrained = model.decoder.injections.state_dict(), fresh.injections.state_dict()  # the file's own keys
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)  # animate decodes with the fitted layers
    assert any(not torch.equal(saved[k], untrained[k]) for k in saved)  # which are not the zero init

    r = run(capsys, "train", "wave", "--set", "model.decoder=vae")
    assert r.code == 2 and "train.detail_decoder" in r.err and "detail-enhance" in r.err
