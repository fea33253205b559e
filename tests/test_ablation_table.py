"""experiments/ablation_table.py: seeds pool across folders per (training set, row); a labelled folder stays apart."""

import json
from pathlib import Path

import pytest
from script_kit import loaded_script


@pytest.fixture(scope="module")
def table_module():
    with loaded_script("experiments/ablation_table.py") as module:
        yield module


def runs(folder: Path, *records: dict) -> Path:
    folder.mkdir()
    (folder / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def record(row: str, seed: int, pose: float, appearance: str = "narrow", action: str = "bow") -> dict:
    return {"action": action, "row": row, "seed": seed, "appearance": appearance,
            "summary": {"keypoints/correlation": pose}}


def test_seeds_pool_across_folders_and_a_label_keeps_a_variant_apart(table_module, tmp_path):
    a = runs(tmp_path / "a", record("#1", 0, 0.4), record("base", 0, 0.2), {"action": "bow", "row": "#1",
                                                                              "seed": 9, "error": "boom"})
    b = runs(tmp_path / "b", record("#1", 1, 0.6))
    c = runs(tmp_path / "c", record("#5", 0, 0.3))
    lines = table_module.table([(a, None), (b, None), (c, "#5, lambda 0.5")]).splitlines()
    rows = {tuple(cell.strip() for cell in line.split("|")[2:5]): line for line in lines[2:]}
    assert set(rows) == {("-", "base", "0"), ("narrow", "#1", "0,1"), ("narrow", "#5, lambda 0.5", "0")}
    assert "0.500 ± 0.141" in rows[("narrow", "#1", "0,1")]  # mean and sample std of 0.4 and 0.6; the error skipped
    assert lines[2].split("|")[3].strip() == "base"  # the untrained rows come first


def test_a_label_with_row_keeps_a_folders_rows_apart(table_module, tmp_path):
    keep = runs(tmp_path / "keep", record("#5", 0, 0.3), record("#6", 0, 0.5), record("#6", 1, 0.7))
    lines = table_module.table([(keep, "{row}, keep")]).splitlines()[2:]
    assert sorted(cells(line)[2:4] for line in lines) == [["#5, keep", "0"], ["#6, keep", "0,1"]]


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.split("|")[1:-1]]


def test_actions_stay_apart_and_the_bar_is_the_gap_over_twice_the_larger_spread(table_module, tmp_path):
    jump = runs(tmp_path / "jump", record("base", 0, 0.2, action="jump"), record("base", 1, 0.3, action="jump"),
                record("#1", 0, 0.5, action="jump"), record("#1", 1, 0.6, action="jump"),
                record("#6", 0, 0.9, action="jump"))
    (tmp_path / "copy.jsonl").write_text((jump / "runs.jsonl").read_text())  # a bench/data copy reads the same
    bow = runs(tmp_path / "bow", record("#1", 0, 0.1), record("#1", 1, 0.2))
    lines = table_module.table([(tmp_path / "copy.jsonl", None), (bow, None)]).splitlines()[2:]
    by_row = {tuple(cells(line)[:3]): cells(line) for line in lines}
    assert set(by_row) == {("bow", "narrow", "#1"), ("jump", "-", "base"), ("jump", "narrow", "#1"),
                           ("jump", "narrow", "#6")}
    # jump #1 0.55 vs base 0.25, both spreads 0.0707: 0.30 / 0.1414 = +2.12; one #6 seed and bow (no base) get no verdict
    assert by_row[("jump", "narrow", "#1")][-1] == "+2.12"
    assert by_row[("jump", "narrow", "#6")][-1] == ""
    assert by_row[("bow", "narrow", "#1")][-1] == ""


def test_runs_scored_on_drawn_people_stay_apart_from_held_out_ones(table_module, tmp_path):
    drawn = [dict(record(row, seed, pose, action="jump"), heldout_split="drawn")
             for row, seed, pose in (("base", 0, 0.1), ("base", 1, 0.1), ("#1", 0, 0.9), ("#1", 1, 0.9))]
    a = runs(tmp_path / "a", record("base", 0, 0.5, action="jump"), *drawn)
    rows = {tuple(cells(line)[:4]) for line in table_module.table([(a, None)]).splitlines()[2:]}
    assert rows == {("jump", "-", "base", "0"), ("jump (drawn people)", "-", "base", "0,1"),
                    ("jump (drawn people)", "narrow", "#1", "0,1")}
