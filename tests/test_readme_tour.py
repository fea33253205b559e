"""README.md's tour runs as written: its marked blocks, command by command, in a copy of the checkout.

Every ``bash`` block after a ``<!-- tour -->`` line is run with bash from the copy's root, unchanged; the
copy's ``flashctl.toml`` is the project's at toy size (fewer frames, smaller clips, 2 denoising steps), so
only the numbers differ from what a user gets.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MARK = "<!-- tour -->"
TOY = {  # a line of the project's flashctl.toml starting so -> its toy-size replacement
    "frames = 16": "frames = 4",
    "size = 64": "size = 32",
    "steps = 20": "steps = 2",  # [animate]
    "metrics = [": 'metrics = ["transition", "smoothness"]',
}


def tour_blocks(readme: str) -> list[str]:
    """The ``bash`` code block right after each ``<!-- tour -->`` line."""
    return re.findall(rf"^{re.escape(MARK)}\n```bash\n(.*?)^```", readme, flags=re.M | re.S)


def toy_config(text: str) -> str:
    lines = text.splitlines()
    for old, new in TOY.items():
        (i,) = [i for i, line in enumerate(lines) if line.startswith(old)]
        lines[i] = new
    lines = [line for line in lines if not line.startswith("base = ")]  # a small random-weight base, not the shipped one
    return "\n".join(lines) + '\nchannels = [16, 32]\nvae_channels = [8, 16, 16]\ntext_dim = 16\n'


def copy_checkout(dest: Path) -> None:
    """The files a fresh clone has that the tour reads (examples, shipped motions), plus the project config."""
    tracked = subprocess.run(["git", "ls-files", "-z", "examples", "motions"], cwd=REPO, check=True,
                             capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, tracked):
        src, dst = REPO / rel, dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(os.readlink(src))
        elif src.exists():
            shutil.copy2(src, dst)
    (dest / "flashctl.toml").write_text(toy_config((REPO / "flashctl.toml").read_text()))
    (dest / ".venv").symlink_to(Path(sys.prefix))


def test_the_tour_blocks_are_found():
    blocks = tour_blocks((REPO / "README.md").read_text())
    assert len(blocks) == 2 and blocks[0].startswith("source .venv/bin/activate")
    commands = [line for block in blocks for line in block.splitlines() if line.startswith("flashctl ")]
    made = {"my_clips/", "held_out/", "photos/"}  # every input the tour uses, it makes first
    for folder in made:
        first_use = next(i for i, c in enumerate(commands) if folder in c)
        assert "synth" in commands[first_use] and f"--out {folder}" in commands[first_use], folder


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="the pipeline block needs ffprobe")
def test_readme_tour_runs_as_written(tmp_path):
    copy_checkout(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASHCTL_")}
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "home" / ".config"), OMP_NUM_THREADS="1")
    for block in tour_blocks((REPO / "README.md").read_text()):
        for line in block.splitlines():
            r = subprocess.run(["bash", "-c", f"set -eo pipefail; source .venv/bin/activate; {line}"],
                               cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, f"{line}\n{r.stderr[-2000:]}"
            if line.startswith("flashctl animate -a wave -i photos/ |"):
                durations = [ln for ln in r.stdout.splitlines() if ln.startswith("duration=")]
                assert len(durations) == 3, r.stdout  # one ffprobe answer per photo
    assert (tmp_path / "outputs" / "actor.mp4").is_file() and (tmp_path / "outputs" / "actor_side.mp4").is_file()
    assert (tmp_path / "eval-comparison" / "comparison.html").is_file()
