"""``accelerate launch`` animate and eval on 2 CPU processes (gloo): the images shared out, none twice, none
missing, each output byte-identical to a single-process run's, and only the main process reporting.

The outputs must match exactly, not to a tolerance: every image is rendered alone from the same weights
with a generator seeded the same in both runs, on the same CPU kernels with one thread (OMP_NUM_THREADS=1,
runtime.threads = 1), so the sharded run does the same arithmetic in the same order; the writers
(GIF, PNG) are deterministic. On GPUs, kernels that pick their algorithm per run may differ in the last bits.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_kit import run
from flashctl.config import load_config
from flashctl.pipeline.train import train
from flashctl.progress import ListReporter
from flashctl.sharding import Shard
from flashctl.video import read_image
from motion_kit import FPS, FRAMES, SIZE, make_action
from test_launch import launch

CLIPS = 5

PROJECT = f"""\
plugins.paths = ["count.py"]
prepare = {{ frames = {FRAMES}, size = {SIZE}, fps = {FPS} }}
train = {{ lr = 3e-3, strong_augment = false, detail_decoder = false }}
animate = {{ steps = 2, seed = 3, formats = ["gif"] }}
eval.metrics = ["first-frame", "smoothness", "motion-fidelity", "count"]
"""  # the tiny backbone, 2 denoising steps, an aggregate metric (count.py) beside per-sample ones

COUNT_PLUGIN = '''
from flashctl import hookimpl


class Count:
    """An aggregate metric: how many samples the process that computes it saw."""

    def __init__(self):
        self.n = 0

    def __call__(self, generated, *, reference, target=None):
        self.n += 1
        return {}

    def compute(self):
        return {"samples": float(self.n)}


@hookimpl
def register_metrics(register):
    register("count", lambda options, ctx: Count(), higher_is_better=None, aggregate=True)
'''

SPY = """\
import hashlib
import os
import sys

from flashctl.cli import main
from flashctl.pipeline import animate

real, command = animate.Animator.render, [0]


def render(self, image, *args, **kwargs):
    with open(f"renders-{command[0]}-{os.environ['RANK']}.txt", "a") as log:  # which process rendered which image
        log.write(hashlib.sha256(image.tobytes()).hexdigest() + "\\n")
    return real(self, image, *args, **kwargs)


animate.Animator.render = render
for command[0], argv in enumerate(" ".join(sys.argv[1:]).split(" + ")):  # several commands, one process start
    try:
        main(argv.split())
    except SystemExit as exc:
        if exc.code:
            raise
"""


def images(folder):
    """Five images: two sizes, one not square, and a clashing stem (coffee.png, coffee.jpg)."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, shape in [("a.png", (32, 32)), ("b.png", (40, 48)), ("coffee.png", (32, 32)),
                        ("coffee.jpg", (36, 36)), ("d.png", (32, 32))]:
        Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(folder / name)
    return sorted(folder.iterdir())


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A trained 'slide' (5 clips), the image folder, the spy, and a 2-process animate and eval of it."""
    root = tmp_path_factory.mktemp("shard")
    (root / "flashctl.toml").write_text(PROJECT)
    (root / "count.py").write_text(COUNT_PLUGIN)
    (root / "spy.py").write_text(SPY)
    config = load_config(root / "flashctl.toml")
    from flashctl.plugins import host_for

    train(config, make_action(config, n=CLIPS), "slide", host_for(config), steps=1)
    images(root / "imgs")
    launched = launch(root, "spy.py", "animate", "-a", "slide", "-i", "imgs", "-o", "sharded", "--json",
                      "+", "eval", "slide", "-o", "eval-sharded", "--json")
    assert launched.returncode == 0, launched.stderr[-3000:]
    decoder, printed = json.JSONDecoder(), launched.stdout.strip()
    animated, end = decoder.raw_decode(printed)
    evaluated, end = decoder.raw_decode(printed, end + 1)
    assert end == len(printed)  # one JSON document per command: only the main process printed
    renders = [[(root / f"renders-{command}-{rank}.txt").read_text().split() for rank in (0, 1)] for command in (0, 1)]
    return root, animated, evaluated, renders


def sha(image) -> str:
    import hashlib

    return hashlib.sha256(image.tobytes()).hexdigest()


def files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_each_image_is_rendered_once_by_one_process(project):
    root, _, _, (renders, _) = project
    expected = sorted(sha(read_image(p)) for p in sorted((root / "imgs").iterdir()))
    first, second = renders
    assert len(first) == 3 and len(second) == 2  # round robin: images 0, 2, 4 and 1, 3
    assert sorted(first + second) == expected  # the union is every image, none twice


def test_sharded_outputs_match_a_single_process_run_byte_for_byte(project, capsys):
    root, listed, _, _ = project
    single = run(capsys, "--config", root / "flashctl.toml", "animate", "-a", "slide", "-i", root / "imgs",
                 "-o", root / "single", "--json")
    assert single.code == 0, single.err
    ours, theirs = files(root / "sharded"), files(root / "single")
    assert set(ours) == {"a.gif", "a_sheet.png", "b.gif", "b_sheet.png", "coffee.gif", "coffee_sheet.png",
                         "coffee-png.gif", "coffee-png_sheet.png", "d.gif", "d_sheet.png"}  # names as one process
    assert ours.keys() == theirs.keys() and all(ours[k] == theirs[k] for k in ours)  # exact: see the docstring

    assert [Path(r["image"]).name for r in listed] == [p.name for p in sorted((root / "imgs").iterdir())]
    assert sorted(Path(v).name for r in listed for v in r["outputs"]) == sorted(ours)


def test_sharded_eval_matches_a_single_process_eval(project, capsys):
    root, _, printed, (_, renders) = project
    first, second = renders
    assert len(first) == 3 and len(second) == 2 and len(set(first + second)) == CLIPS

    single = run(capsys, "--config", root / "flashctl.toml", "eval", "slide", "-o", root / "eval-single", "--json")
    assert single.code == 0, single.err
    ours, theirs = (json.loads((root / folder / "metrics.json").read_text()) for folder in ("eval-sharded", "eval-single"))
    assert [s["reference"] for s in ours["samples"]] == [f"clip {i}" for i in range(CLIPS)]
    assert ours["samples"] == theirs["samples"]  # every score and per-frame series, exactly
    assert ours["summary"] == theirs["summary"] and ours["weights"] == theirs["weights"]
    assert ours["summary"]["count/samples"] == CLIPS  # the aggregate metric saw the whole set, on one process
    assert printed["summary"] == ours["summary"]  # printed once, by the main process
    report_files = {name for name in files(root / "eval-sharded") if name.startswith("samples/")}
    assert report_files == {name for name in files(root / "eval-single") if name.startswith("samples/")}
    assert (root / "eval-sharded" / "report.html").is_file()


def test_progress_on_the_main_process_only_and_the_others_notes_labelled():
    main, other = ListReporter(), ListReporter()
    for reporter, shard in ((main, Shard(0, 2)), (other, Shard(1, 2))):
        wrapped = shard.reporter(reporter)
        assert shard.reporter(wrapped) is wrapped  # wrapped once however often it is asked
        wrapped.start("animate", total=4)
        wrapped.advance(1, loss=0.5)
        wrapped.note("b.png: cropped", level="warning")
        wrapped.finish()
    assert main.events == [("start", ("animate, process 1/2", 4)), ("advance", (1, {"loss": 0.5})),
                           ("note", ("warning", "b.png: cropped")), ("finish", None)]
    assert other.events == [("note", ("warning", "[process 2/2] b.png: cropped"))]
    assert Shard().reporter(main) is main and Shard(1, 3).take(8) == [1, 4, 7]
