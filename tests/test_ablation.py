"""bench/ablation.py: the variant table trains METHOD.md's rows, and --quick runs end to end."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

from flashctl.model.motion_alignment import ablation_row

SCRIPT = Path(__file__).parents[1] / "bench" / "ablation.py"

# METHOD.md's ablation table: row -> (strong augment, motion align, correspondence align, DED)
METHOD_TABLE = {"#1": (False, False, False, False), "#2": (True, False, False, False),
                "#3": (True, True, False, False), "#4": (True, False, True, False),
                "#5": (True, True, True, False), "#6": (True, True, True, True)}


@pytest.fixture(scope="module")
def ablation():
    spec = importlib.util.spec_from_file_location("bench_ablation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture()
def project(tmp_path):
    path = tmp_path / "flashctl.toml"
    path.write_text('[library]\npath = "motions"\n')
    return path


@pytest.mark.parametrize("row", sorted(METHOD_TABLE))
def test_variant_overrides_set_the_rows_switches(ablation, project, row):
    variant = next(v for v in ablation.VARIANTS if v.row == row)
    args = ablation.parse(["--steps", "7", "--animate-steps", "3"])
    config = ablation.variant_config(project, variant, seed=5, args=args)
    t = config.train
    assert (t.strong_augment, t.motion_align, t.correspondence_align, t.detail_decoder) == METHOD_TABLE[row]
    assert ablation_row(t) == row  # the library agrees which row this config trains
    assert config.model.decoder == ("detail-enhance" if row == "#6" else "vae")
    assert (t.steps, t.seed, config.animate.seed, config.animate.steps) == (7, 5, 5, 3)
    assert config.eval.metrics == ablation.METRICS


def test_variants_are_the_six_rows_in_order(ablation):
    assert [v.row for v in ablation.VARIANTS] == sorted(METHOD_TABLE)


def test_aggregate_means_and_stds_over_seeds(ablation):
    runs = [{"row": "#2", "seed": s, "train_s": t, "summary": {"first-frame/psnr": p}}
            for s, t, p in ((0, 1.0, 20.0), (1, 3.0, 24.0))]
    runs.append({"row": "#3", "seed": 0, "error": "boom"})
    rows = {r["row"]: r for r in ablation.aggregate(runs)}
    cell = rows["#2"]["cells"]["first-frame/psnr"]
    assert cell["mean"] == 22.0 and cell["std"] == pytest.approx(math.sqrt(8)) and cell["n"] == 2
    assert rows["#2"]["cells"]["train_s"]["mean"] == 2.0
    assert rows["#3"]["errors"] == ["boom"] and rows["#3"]["cells"]["train_s"]["mean"] is None
    table = ablation.markdown_table(list(rows.values()))
    assert "22.0 ± 2.8" in table and "#3: boom" in table


def test_quick_run_end_to_end(ablation, tmp_path, capsys):
    assert ablation.main(["--quick", "--out", str(tmp_path / "out")]) == 0
    import json

    report = json.loads((tmp_path / "out" / "ablation.json").read_text())
    assert [r["row"] for r in report["rows"]] == sorted(METHOD_TABLE)
    assert not [r for r in report["runs"] if "error" in r]
    for row in report["rows"]:
        for _, key in ablation.COLUMNS:
            assert math.isfinite(row["cells"][key]["mean"]), (row["row"], key)
    assert (tmp_path / "out" / "comparison.html").is_file()
    assert (tmp_path / "out" / "ablation.md").read_text().count("\n| #") == 6
    assert capsys.readouterr().out.count("\n| #") == 6


def test_sanity_ranking_brackets_every_candidate(ablation):
    ranking = ablation.sanity(ablation.parse(["--frames", "8", "--size", "32"]), samples=2)
    means = {name: value["mean"] for name, value in ranking.items()}
    assert means.pop("ground truth") == pytest.approx(1.0) and means.pop("frozen first frame") == 0.0
    assert all(0.0 < value < 0.99 for value in means.values()), means
