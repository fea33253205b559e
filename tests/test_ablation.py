"""experiments/ablation.py: the variant table trains METHOD.md's rows, and --quick runs end to end."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from script_kit import loaded_script

from flashctl.config import load_config


# METHOD.md's ablation table: row -> (strong augment, motion align, correspondence align, DED)
METHOD_TABLE = {"#1": (False, False, False, False), "#2": (True, False, False, False),
                "#3": (True, True, False, False), "#4": (True, False, True, False),
                "#5": (True, True, True, False), "#6": (True, True, True, True)}


@pytest.fixture(scope="module")
def ablation():
    with loaded_script("experiments/ablation.py") as module:
        yield module


@pytest.fixture()
def project(tmp_path):
    path = tmp_path / "flashctl.toml"
    path.write_text('[library]\npath = "motions"\n')
    return path


@pytest.mark.parametrize("row", sorted(METHOD_TABLE))
def test_variant_overrides_set_the_rows_switches(ablation, project, row):
    variant = next(v for v in ablation.VARIANTS if v.row == row)
    args = ablation.parse(["--steps", "7", "--animate-steps", "3", "--guidance", "2.5", "--metrics", "smoothness"])
    config = ablation.variant_config(project, variant, seed=5, args=args)
    t = config.train
    assert (t.strong_augment, t.mam.motion_align, t.mam.correspondence_align, t.detail_decoder) == METHOD_TABLE[row]
    assert t.ablation_row == row  # the library agrees which row this config trains
    assert config.model.decoder == ("detail-enhance" if row == "#6" else "vae")
    assert (t.steps, t.seed, config.animate.seed, config.animate.steps) == (7, 5, 5, 3)
    assert config.animate.guidance_scale == 2.5 and config.animate.strength == 1.0
    assert config.eval.metrics == ["smoothness"]


def test_base_row_samples_the_base_alone_with_the_stock_decoder(ablation, project):
    base = next(v for v in ablation.VARIANTS if v.row == "base")
    config = ablation.variant_config(project, base, seed=0, args=ablation.parse([]))
    assert config.animate.strength == 0 and config.model.decoder == "vae" and not base.trained


def test_rows_pick_a_subset_in_table_order(ablation):
    args = ablation.parse(["--rows", "base", "1", "#6"])
    assert [v.row for v in args.variants] == ["base", "#1", "#6"]
    assert [v.row for v in ablation.VARIANTS if v.trained] == sorted(METHOD_TABLE)


def test_frozen_animator_repeats_the_reference(ablation):
    image = np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    video = ablation.FrozenAnimator(frames=5, size=20).render(image, seed=0)
    assert video.shape == (5, 20, 20, 3) and all(np.array_equal(frame, image) for frame in video)


def test_aggregate_means_and_stds_over_seeds_per_action(ablation):
    runs = [{"action": "bow", "row": "#2", "seed": s, "train_s": t, "summary": {"first-frame/psnr": p}}
            for s, t, p in ((0, 1.0, 20.0), (1, 3.0, 24.0))]
    runs.append({"action": "bow", "row": "#3", "seed": 0, "error": "boom"})
    runs.append({"action": "jump", "row": "#2", "seed": 0, "train_s": 5.0, "summary": {"first-frame/psnr": 9.0}})
    rows = {(r["action"], r["row"]): r for r in ablation.aggregate(runs)}
    cell = rows["bow", "#2"]["cells"]["first-frame/psnr"]
    assert cell["mean"] == 22.0 and cell["std"] == pytest.approx(math.sqrt(8)) and cell["n"] == 2
    assert rows["bow", "#2"]["cells"]["train_s"]["mean"] == 2.0
    assert rows["jump", "#2"]["cells"]["first-frame/psnr"]["mean"] == 9.0
    assert rows["bow", "#3"]["errors"] == ["boom"] and rows["bow", "#3"]["cells"]["train_s"]["mean"] is None
    table = ablation.markdown_table(list(rows.values()), {"first-frame/psnr": True})
    assert "22.0 ± 2.8" in table and "bow #3: boom" in table and "first-frame/psnr ↑" in table


def test_heldout_split_picks_the_reference_people_and_a_project_keeps_its_split(ablation, tmp_path):
    import json

    drawn = ablation.parse(["--quick", "--clips", "1", "--heldout-split", "drawn"])
    config, clips = ablation.make_project(tmp_path, "bow", drawn)
    assert [c.name for c in clips] == ["bow_drawn_00100.mp4", "bow_drawn_00101.mp4"]
    assert {json.loads(c.with_suffix(".json").read_text())["split"] for c in clips} == {"drawn"}
    assert ablation.make_project(tmp_path, "bow", drawn) == (config, clips)  # reused as it is
    with pytest.raises(SystemExit, match="held-out clips are drawn people, not --heldout-split heldout"):
        ablation.make_project(tmp_path, "bow", ablation.parse(["--quick", "--clips", "1"]))
    heldout = ablation.parse(["--quick", "--clips", "1"])
    ablation.make_project(tmp_path / "other", "bow", heldout)
    with pytest.raises(SystemExit, match="held-out clips are heldout people, not --heldout-split drawn"):
        ablation.make_project(tmp_path / "other", "bow", drawn)
    assert ablation.parse([]).heldout_split == "heldout"


def test_quick_run_end_to_end_then_resumes_without_rerunning(ablation, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--quick", "--rows", "base", "frozen", "1", "6", "--out", "out", "--metrics", "smoothness"]  # cwd: tmp_path
    assert ablation.main(argv) == 0
    import json

    report = json.loads((out / "ablation.json").read_text())
    assert [r["row"] for r in report["rows"]] == ["base", "frozen", "#1", "#6"]
    assert not [r for r in report["runs"] if "error" in r]
    keys = [key for key in report["rows"][0]["cells"] if key.startswith("smoothness/")]
    assert keys
    for row in report["rows"]:
        assert all(math.isfinite(row["cells"][key]["mean"]) for key in keys), row["row"]
        assert 0 <= row["cells"]["recognised/accuracy"]["mean"] <= 1
        trained = row["row"].startswith("#")
        for key in ("heldout-loss/structure", "train-loss/detail"):  # motion/base loss ratios, trained rows only
            assert (row["cells"][key]["mean"] is not None and row["cells"][key]["mean"] > 0) == trained, row["row"]
    frozen = next(r for r in report["runs"] if r["row"] == "frozen")
    samples = json.loads(Path(frozen["metrics_json"]).read_text())["samples"]
    assert samples and all(change == 0 for s in samples for change in s["series"]["change"])  # nothing moves
    assert capsys.readouterr().out.count("\n| bow") == 4
    config = load_config(out / "projects" / "bow" / "flashctl.toml")
    assert config.library_path() == (out / "projects" / "bow" / "motions").resolve()  # not relative to itself
    lines = (out / ablation.RUNS_FILE).read_text().splitlines()
    assert ablation.main(argv) == 0  # every run is recorded: nothing is trained again
    assert (out / ablation.RUNS_FILE).read_text().splitlines() == lines
    # a sampler change: score the same trained motions again in a new folder, without training them again
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr("flashctl.pipeline.train.train", lambda *a, **k: pytest.fail("a reused row was retrained"))
    again = ["--quick", "--rows", "1", "6", "--out", "again", "--metrics", "smoothness", "--reuse-from", "out"]
    try:
        assert ablation.main(again) == 0
    finally:
        monkeypatch.undo()
    runs = [json.loads(line) for line in (tmp_path / "again" / ablation.RUNS_FILE).read_text().splitlines()]
    first = {r["row"]: r for r in map(json.loads, lines)}
    assert [r["row"] for r in runs] == ["#1", "#6"] and not [r for r in runs if "error" in r]
    assert all(r["reused_from"].endswith(r["motion"]) and r["train_s"] == first[r["row"]]["train_s"] for r in runs)
    assert {r["heldout_split"] for r in runs + list(first.values())} == {"heldout"}
    # the same trained motion scored on drawn people
    drawn = ["--quick", "--rows", "1", "--out", "drawn", "--metrics", "smoothness", "--reuse-from", "out",
             "--heldout-split", "drawn"]
    monkeypatch.setattr("flashctl.pipeline.train.train", lambda *a, **k: pytest.fail("a reused row was retrained"))
    try:
        assert ablation.main(drawn) == 0
    finally:
        monkeypatch.undo()
    (run,) = ablation.load_runs(tmp_path / "drawn")
    assert run["heldout_split"] == "drawn" and run["reused_from"].endswith(run["motion"]) and "error" not in run
    assert sorted(p.name for p in (tmp_path / "drawn" / "projects" / "bow" / "clips" / "heldout").glob("*.mp4")) == \
        ["bow_drawn_00100.mp4", "bow_drawn_00101.mp4"]
