"""prepare -> train (MAM: both alignments) -> animate -> eval through the CLI with `model.backbone = "wan"` (tiny, 5 frames, 32 px, CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cli_kit import run

FRAMES = 5  # 4k+1: two latent frames
CONFIG = f"""
[model]
backbone = "wan"
decoder = "vae"

[prepare]
frames = {FRAMES}
size = 32
fps = 8.0

[train]
steps = 2
strong_augment = true
augmentations = ["invert", "grayscale"]

[train.mam]
motion_align = true
correspondence_align = true   # both on attn1's 3-D attention

[animate]
steps = 2
scheduler = "euler"        # flow matching samples with Wan's Euler scheduler only
guidance_scale = 2.0
formats = ["mp4"]
"""


@pytest.fixture
def project(tmp_path, capsys):
    """flashctl.toml, two synthetic clips of people waving (clips/) and a still of another person (photos/)."""
    (tmp_path / "flashctl.toml").write_text(CONFIG)
    for argv in (("--clips", "2", "--out", tmp_path / "clips"),
                 ("--clips", "1", "--seed", "100", "--reference-only", "--out", tmp_path / "photos")):
        assert run(capsys, "synth", "arm_wave", *argv).code == 0
    return tmp_path


def test_prepare_train_animate_on_wan(project, capsys):
    from flashctl.video import probe

    r = run(capsys, "prepare", "wave", "--clips", project / "clips", "--prompt", "a person waving")
    assert r.code == 0, r.err
    r = run(capsys, "train", "wave", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["steps"] == 2 and np.isfinite(json.loads(r.out)["final_loss"])
    record = json.loads((project / "motions" / "wave" / "weights" / "config.json").read_text())
    assert record["backbone"]["geometry"]["backbone"] == "wan" and record["frames"] == FRAMES
    assert record["scheduler"]["shift"] == 3.0
    provenance = json.loads((project / "motions" / "wave" / "provenance.json").read_text())
    assert provenance["mam"]["layers"] == {"blocks.0.attn1.processor": "motion+correspondence",
                                           "blocks.1.attn1.processor": "motion+correspondence"}
    assert provenance["mam"]["ablation"] == "#5"

    outputs = []
    for seed in ("0", "0", "1"):
        out = project / f"out{len(outputs)}"
        r = run(capsys, "animate", "-a", "wave", "-i", project / "photos", "--out", out, "--set",
                f"animate.seed={seed}")
        assert r.code == 0, r.err
        (mp4,) = r.out.split()
        info = probe(mp4)
        assert info.frames == FRAMES and (info.width, info.height) == (32, 32)
        outputs.append(next(out.glob("*_sheet.png")).read_bytes())
    assert outputs[0] == outputs[1] and outputs[0] != outputs[2]  # the same seed gives the same video

    r = run(capsys, "eval", "wave", "--json")  # each clip's first frame animated, scored against the clip
    assert r.code == 0, r.err
    assert (project / "motions" / "wave" / "eval" / "metrics.json").is_file()


def test_a_frame_count_wan_cannot_hold_is_one_line_naming_the_counts_that_work(project, capsys):
    (project / "flashctl.toml").write_text(CONFIG.replace(f"frames = {FRAMES}", "frames = 8"))
    r = run(capsys, "prepare", "wave", "--clips", project / "clips", "--prompt", "a person waving")
    assert r.code == 0, r.err
    r = run(capsys, "train", "wave")
    assert r.code != 0 and "Traceback" not in r.err
    errors = [line for line in r.err.splitlines() if line.startswith(("error:", "hint:"))]
    assert [line.split(":")[0] for line in errors] == ["error", "hint"]  # one error line and its hint
    assert "needs 4k+1 frames" in r.err and "got 8" in r.err and "prepare.frames = 5, 9, 13, 17" in r.err
