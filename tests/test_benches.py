"""Benchmarks must not rot: each runs at toy size and prints its table (figures are not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOY = ["--frames", "2", "--size", "16", "--steps", "1", "--warmup", "0", "--repeat", "1"]


@pytest.mark.parametrize("script, extra", [("train_loop.py", ["--clips", "1", "--threads", "1"]),
                                           ("train_step.py", ["--clips", "2"])])
def test_bench_runs_at_toy_size(script, extra):
    proc = subprocess.run([sys.executable, str(REPO / "bench" / script), *TOY, *extra], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-800:]
    assert "#1" in proc.stdout or "flashctl" in proc.stdout  # the table was printed


def test_wan_bench_runs_at_toy_size_and_renders_the_stock_pipelines_video(tmp_path):
    """bench/wan.py's step and render parts (its train part runs train() in child processes as train_step.py,
    tested above, does); the render comparison is only fair if flashctl and the stock WanImageToVideoPipeline
    make the same video from the same noise."""
    import json

    out = tmp_path / "wan.json"
    toy = ["--frames", "5", "--size", "16", "--steps", "1", "--warmup", "0", "--repeat", "1", "--render-steps", "2",
           "--layers", "1", "--heads", "2", "--head-dim", "16", "--ffn-dim", "64"]
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "wan.py"), *toy, "--part", "step", "render",
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-800:]
    assert "#5 MAM" in proc.stdout and "stock WanImageToVideoPipeline" in proc.stdout  # the tables were printed
    result = json.loads(out.read_text())
    assert [r["variant"] for r in result["step"]["rows"]] == ["#1 plain", "#5 MAM"]
    diff = result["render"]["max_uint8_diff_to_flashctl"]  # per stock variant, in uint8 levels
    assert set(diff) == {"stock", "stock_flashctl_attn"} and max(diff.values()) <= 1  # 1: a rounding flip
