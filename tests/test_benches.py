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
